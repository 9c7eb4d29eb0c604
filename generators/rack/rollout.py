"""``rack.plan`` and ``rack.apply``: the seed's rollout as ordered, idempotent steps, on a :class:`Site`.

Steps, in this order (and why):

1. ``gateway``: FRR's ``router bgp`` block as rendered (``generators.rack.gateway``), then every session
   that was Established is Established again. First, so a new node finds its neighbor waiting and a
   removed one stops receiving traffic before anything else goes.
2. ``cilium-values``: Cilium's Helm values, kube-proxy replacement included, before any node may drop
   kube-proxy (the seed's migration order). Skipped on a lab (no kubelet there).
3. ``resources``: the LB pool, the four BGP resources, the apiserver Service, EndpointSlice and CCEC by
   server-side apply; then what Cilium reports: a CiliumBGPNodeConfig per selected node, and the pinned
   Services holding their VIPs.
4. ``nodes``: one node at a time, the first server last: its config.yaml (and a joiner's token file), a
   k3s restart, and its apiserver healthy, the VIP answering and its BGP session up before the next.
   ``disable-kube-proxy: true`` is refused while the live Cilium values lack kube-proxy replacement.
   Nodes the cluster has and the inventory does not are retired last.

A plan reads everything and writes nothing. ``apply`` re-reads each step's live state just before it
changes it, and a step with nothing to change says so and changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..cluster.apply import NotYet, apply_documents, changed_paths, delete_documents, list_objects, wait_until
from ..cluster.client import request
from ..errors import CheckFailed, InputError, LabToolError
from ..output import write_tree
from ..pipeline import render_model
from ..readback.cilium import Bgp
from ..readback.frrconf import parse_frr
from ..readback.frrstate import ESTABLISHED, session_states
from ..readback.rendered import APISERVER_BGP, CILIUM_BGP, CILIUM_VALUES, FRR_CONF, K3S_GLOB, Rendered, load_rendered
from ..readback.selectors import selector_matches
from ..readback.services import read_services
from ..readback.values import as_bool
from .gateway import apply_gateway, plan_gateway
from .shell import Shell, file_exists, must, read_file, write_file
from .site import Site

Log = Callable[[str], None]
STEPS = ("gateway", "cilium-values", "resources", "nodes")
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_SERVER_TOKEN = "/var/lib/rancher/k3s/server/token"  # what k3s writes on its first server
RESOURCE_FILES = (CILIUM_BGP, APISERVER_BGP)
PLAN_SCHEMA = "rack-plan/1"
APPLY_SCHEMA = "rack-apply/1"


class StepRefused(CheckFailed):
    """A step would do something unsafe (or FRR/the API refused it); nothing of that step was changed."""


@dataclass
class Change:
    step: str
    target: str  # "gateway", "cluster", "helm" or a node's name
    what: str  # the file or the resource
    action: str  # add | remove | replace | create | change | conflict | delete | retire
    fields: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict:
        return {"step": self.step, "target": self.target, "what": self.what, "action": self.action,
                "fields": self.fields, **({"note": self.note} if self.note else {})}

    def render(self) -> str:
        line = f"{self.action:<8} {self.what}"
        if self.fields:
            line += ": " + ", ".join(self.fields)
        return line + (f"  ({self.note})" if self.note else "")


@dataclass
class StepPlan:
    step: str
    changes: list[Change] = field(default_factory=list)
    skipped: str = ""  # why the step does not apply here
    problems: list[str] = field(default_factory=list)  # what apply would refuse

    def to_json(self) -> dict:
        return {"step": self.step, "changes": len(self.changes), "skipped": self.skipped or None,
                "problems": self.problems}


@dataclass
class Plan:
    site: str
    inventory: str
    steps: list[StepPlan]

    @property
    def changes(self) -> int:
        return sum(len(s.changes) for s in self.steps)

    @property
    def problems(self) -> list[str]:
        return [p for s in self.steps for p in s.problems]

    def to_json(self) -> dict:
        return {"schema": PLAN_SCHEMA, "site": self.site, "inventory": self.inventory, "changes": self.changes,
                "targets": [c.to_json() for s in self.steps for c in s.changes],
                "steps": [s.to_json() for s in self.steps], "problems": self.problems}

    def render(self) -> str:
        out = [f"plan for {self.site} ({self.inventory})"]
        for s in self.steps:
            head = f"\n[{s.step}] " + (f"skipped: {s.skipped}" if s.skipped else
                                        ("nothing to change" if not s.changes else f"{len(s.changes)} change(s)"))
            out.append(head)
            by_target: dict[str, list[Change]] = {}
            for c in s.changes:
                by_target.setdefault(c.target, []).append(c)
            for target, changes in by_target.items():
                out.append(f"  {target}:")
                out += [f"    {c.render()}" for c in changes]
            out += [f"  refused: {p}" for p in s.problems]
        out.append(f"\n{self.changes} change(s)" + (f", {len(self.problems)} refused" if self.problems else ""))
        return "\n".join(out)


@dataclass
class StepResult:
    step: str
    status: str  # done | nothing | skipped | failed | not-run
    changed: list[str] = field(default_factory=list)
    error: str = ""
    details: list[str] = field(default_factory=list)  # e.g. FRR's own error lines

    def to_json(self) -> dict:
        return {"step": self.step, "status": self.status, "changed": self.changed,
                **({"error": self.error, "details": self.details} if self.error else {})}


# ----------------------------------------------------------------------------- the rollout
def rendered_files(site: Site, out: Path) -> Rendered:
    """The rack's files of the site's inventory, written (atomically) under ``out`` and read back."""
    files = render_model(site.model)
    return load_rendered(write_tree(files, out))


class Rollout:
    """The steps for one site and one set of rendered files."""

    def __init__(self, site: Site, rendered: Rendered, *, force_conflicts: bool = False,
                 wait_timeout: float = 180.0, log: Log = print):
        self.site = site
        self.rendered = rendered
        self.targets = site.targets()
        self.force = force_conflicts
        self.wait_timeout = wait_timeout
        self.log = log
        self.field_manager = self.targets.cluster.field_manager

    # ------------------------------------------------------------------ plan
    def plan(self, only: str | None = None) -> Plan:
        planners = {"gateway": self.plan_gateway, "cilium-values": self.plan_values,
                    "resources": self.plan_resources, "nodes": self.plan_nodes}
        steps = [planners[s]() for s in STEPS if only in (None, s)]
        return Plan(self.site.label, str(self.site.model.source), steps)

    def plan_gateway(self) -> StepPlan:
        with self.site.shell(self.targets.gateway) as sh:
            gp = plan_gateway(sh, self.rendered.frr_conf)
        changes = []
        if gp.diff.replaces_router and gp.diff.live_title:
            changes.append(Change("gateway", "gateway", FRR_CONF, "replace",
                                  [f"{gp.diff.live_title} -> {gp.diff.wanted_title}"],
                                  note="the ASN changes: every session drops"))
        changes += [Change("gateway", "gateway", FRR_CONF, "remove", [x.show()]) for x in gp.diff.removed]
        changes += [Change("gateway", "gateway", FRR_CONF, "add", [x.show()]) for x in gp.diff.added]
        return StepPlan("gateway", changes)

    def _values_file(self) -> dict:
        return dict(self.rendered.cilium_values)

    def plan_values(self) -> StepPlan:
        skip = self.site.cilium_values_skip()
        if skip:
            return StepPlan("cilium-values", skipped=skip)
        live = self.site.live_cilium_values()
        t = self.targets
        if live is None:
            cmd = f"helm get values {t.helm_release} -n {t.helm_namespace} -o yaml"
            return StepPlan("cilium-values", skipped=f"helm is not on the PATH: compare `{cmd}` with "
                                                      f"{CILIUM_VALUES} yourself, or install helm")
        paths = changed_paths(live, self._values_file())
        if not paths:
            return StepPlan("cilium-values")
        return StepPlan("cilium-values", [Change("cilium-values", "helm", f"release {t.helm_namespace}/"
                                                 f"{t.helm_release}", "change" if live else "create", paths)])

    def _resource_docs(self) -> list[dict]:
        return [d.body for d in self.rendered.docs if d.file in RESOURCE_FILES]

    def _stale(self, api: Any, docs: list[dict]) -> list[tuple[str, str, str, str]]:
        """Objects of the rendered kinds that this field manager applied and the files no longer have."""
        wanted = {(d["apiVersion"], d["kind"], (d.get("metadata") or {}).get("namespace") or "",
                   d["metadata"]["name"]) for d in docs}
        out = []
        for api_version, kind in sorted({(d["apiVersion"], d["kind"]) for d in docs}):
            for obj in list_objects(api, api_version, kind):
                meta = obj.get("metadata") or {}
                ours = any(m.get("manager") == self.field_manager and m.get("operation") == "Apply"
                           for m in meta.get("managedFields") or [])
                ref = (api_version, kind, meta.get("namespace") or "", meta.get("name", ""))
                if ours and ref not in wanted and not _namespaced_default(ref, wanted):
                    out.append(ref)
        return out

    def plan_resources(self) -> StepPlan:
        docs = self._resource_docs()
        with self.site.kube() as api:
            results = apply_documents(api, docs, dry_run=True, force_conflicts=self.force,
                                      field_manager=self.field_manager)
            stale = self._stale(api, docs)
        plan = StepPlan("resources")
        for r in results:
            if r.action == "unchanged":
                continue
            if r.action == "conflict":
                plan.changes.append(Change("resources", "cluster", r.ref, "conflict",
                                           [f"{p} (owned by {m})" for p, m in r.conflicts]))
                plan.problems.append(f"{r.ref}: " + "; ".join(f"{p} is owned by {m}" for p, m in r.conflicts)
                                     + "; apply leaves it alone (--force-conflicts takes the fields over)")
            else:
                plan.changes.append(Change("resources", "cluster", r.ref, "create" if r.action == "created"
                                           else "change", r.fields, note=r.note))
        for _api_version, kind, ns, name in stale:
            plan.changes.append(Change("resources", "cluster", "/".join(p for p in (kind, ns, name) if p), "delete",
                                       note=f"applied by {self.field_manager} before; the files no longer have it"))
        return plan

    # nodes ------------------------------------------------------------
    def _node_order(self) -> list[str]:
        """Joiners in inventory order, the first server (cluster-init) last."""
        names = [n.name for n in self.site.model.nodes]
        first = [n for n in names if self._wanted_config(n).get("cluster-init")]
        return [n for n in names if n not in first] + first

    def _wanted_text(self, node: str) -> str:
        path = self.rendered.root / K3S_GLOB.replace("*", node)
        if not path.is_file():
            raise InputError(f"{path.relative_to(self.rendered.root)}: missing; the files must hold a k3s config "
                             f"for every inventory node ({node})")
        return path.read_text()

    def _wanted_config(self, node: str) -> dict:
        return dict(yaml.safe_load(self._wanted_text(node)) or {})

    def _node_ready(self, node: str) -> bool:
        """Whether the node's apiserver answers /readyz (k3s runs there with some config)."""
        try:
            with self.site.node_kube(node) as api:
                status, _ = request(api, "GET", "/readyz")
        except LabToolError:
            return False
        return status == 200

    def _restart_change(self, node: str) -> list[Change]:
        """A node whose files are as rendered but whose k3s does not answer (a restart that failed) needs one."""
        if self._node_ready(node):
            return []
        return [Change("nodes", node, "k3s", "restart", note="its apiserver does not answer /readyz")]

    def _node_changes(self, node: str, live_text: str | None, token_present: bool | None,
                      note: str = "") -> list[Change]:
        wanted_text = self._wanted_text(node)
        wanted = self._wanted_config(node)
        changes = []
        if live_text != wanted_text:
            try:
                live = yaml.safe_load(live_text) if live_text is not None else None
            except yaml.YAMLError:
                live = "<not YAML>"
            paths = changed_paths(live if isinstance(live, dict) else {}, wanted) or ["(formatting only)"]
            changes.append(Change("nodes", node, K3S_CONFIG, "create" if live_text is None else "change", paths,
                                  note=note))
        token_file = wanted.get("token-file")
        if token_file and wanted.get("server") and not token_present:
            changes.append(Change("nodes", node, str(token_file), "create",
                                  ["the cluster's token, read from the first server (never shown)"], note=note))
        return changes

    def _kube_proxy_problem(self, node: str, live_text: str | None) -> str | None:
        wanted = self._wanted_config(node)
        if as_bool(wanted.get("disable-kube-proxy")) is not True:
            return None
        try:
            live = yaml.safe_load(live_text or "") or {}
        except yaml.YAMLError:
            live = {}
        if isinstance(live, dict) and as_bool(live.get("disable-kube-proxy")) is True:
            return None  # already without kube-proxy
        values = self.site.live_cilium_values()
        if self.site.is_lab:
            values = dict(self.rendered.cilium_values)  # the lab's agents run with the rendered values
        kpr = (values or {}).get("kubeProxyReplacement") if values is not None else None
        if values is not None and (as_bool(kpr) is True or str(kpr).lower() == "strict"):
            return None
        why = ("the live Cilium values cannot be read (helm is not on the PATH)" if values is None else
               "the live Cilium values lack kubeProxyReplacement: true")
        return (f"{node}: disable-kube-proxy: true while {why}; roll out cilium-values first (rack.apply --only "
                "cilium-values), or Services stop working on this node when kube-proxy goes")

    def _live_nodes(self) -> list[str]:
        with self.site.kube() as api:
            return sorted(o["metadata"]["name"] for o in list_objects(api, "v1", "Node"))

    def plan_nodes(self) -> StepPlan:
        plan = StepPlan("nodes")
        for node in self._node_order():
            target = self.targets.node(node)
            if not self.site.machine_exists(node):
                plan.changes.append(Change("nodes", node, "machine", "create", note="lab: apply creates it"))
                plan.changes += self._node_changes(node, None, False, note="on the new machine")
                live_text = None
            else:
                with self.site.shell(target) as sh:
                    live_text = read_file(sh, K3S_CONFIG)
                    token_file = self._wanted_config(node).get("token-file")
                    present = file_exists(sh, str(token_file)) if token_file else True
                plan.changes += self._node_changes(node, live_text, present) or self._restart_change(node)
            problem = self._kube_proxy_problem(node, live_text)
            if problem:
                plan.problems.append(problem)
        inventory = {n.name for n in self.site.model.nodes}
        for name in self._live_nodes():
            if name not in inventory:
                plan.changes.append(Change("nodes", name, f"Node/{name}", "retire", ["etcd member", "Node"],
                                           note="in the cluster, not in the inventory"))
        return plan

    # ------------------------------------------------------------------ apply
    def apply(self, only: str | None = None) -> list[StepResult]:
        """Run the steps in order; stop at the first failure (the rest are ``not-run``)."""
        runners = {"gateway": self.apply_gateway, "cilium-values": self.apply_values,
                   "resources": self.apply_resources, "nodes": self.apply_nodes}
        results: list[StepResult] = []
        failed: LabToolError | None = None
        for step in STEPS:
            if only not in (None, step):
                continue
            if failed is not None:
                results.append(StepResult(step, "not-run"))
                continue
            self.log(f"[{step}]")
            try:
                results.append(runners[step]())
            except LabToolError as exc:
                results.append(StepResult(step, "failed", error=str(exc), details=list(exc.details)))
                failed = exc
            self.log(f"  {results[-1].status}" + (f": {results[-1].error}" if results[-1].error else ""))
        if failed is not None:
            raise RolloutFailed(results, failed)
        return results

    def _sessions(self, sh: Shell) -> dict[str, str]:
        return session_states(json.loads(must(sh, "vtysh -c 'show bgp neighbors json'", "show bgp neighbors")))

    def _wait_sessions(self, sh: Shell, peers: set[str], what: str) -> None:
        if not peers:
            return

        def up() -> bool | NotYet:
            states = self._sessions(sh)
            down = sorted(p for p in peers if states.get(p) != ESTABLISHED)
            return True if not down else NotYet(f"not Established: {', '.join(down)}")

        wait_until(up, self.wait_timeout, 0.5, what)

    def apply_gateway(self) -> StepResult:
        with self.site.shell(self.targets.gateway) as sh:
            gp = plan_gateway(sh, self.rendered.frr_conf)
            if not gp.changes:
                return StepResult("gateway", "nothing")
            before = {ip for ip, state in self._sessions(sh).items() if state == ESTABLISHED}
            changed = apply_gateway(sh, gp, self.log)
            router = parse_frr(self.rendered.frr_conf).bgp
            wanted_peers = {n.name for n in router.peers()} if router else set()
            self._wait_sessions(sh, before & wanted_peers, "the node sessions Established again")
        return StepResult("gateway", "done", changed)

    def apply_values(self) -> StepResult:
        plan = self.plan_values()
        if plan.skipped:
            return StepResult("cilium-values", "skipped", [plan.skipped])
        if not plan.changes:
            return StepResult("cilium-values", "nothing")
        changed = self.site.apply_cilium_values(self.rendered.root / CILIUM_VALUES, self.site.model.cilium_version,
                                                self.log)
        return StepResult("cilium-values", "done", changed)

    def apply_resources(self) -> StepResult:
        docs = self._resource_docs()
        with self.site.kube() as api:
            results = apply_documents(api, docs, dry_run=False, force_conflicts=self.force,
                                      field_manager=self.field_manager)
            conflicts = [r for r in results if r.action == "conflict"]
            changed = [f"{r.action} {r.ref}" + (f": {', '.join(r.fields)}" if r.fields else "")
                       for r in results if r.action in ("created", "changed")]
            stale = self._stale(api, docs)
            changed += [f"deleted {d.ref}" for d in delete_documents(api, stale, wait_timeout=60)
                        if d.action == "deleted"]
            if conflicts:
                raise StepRefused("fields owned by another field manager were left alone (--force-conflicts "
                                  "takes them over)", [f"{r.ref}: {p} is owned by {m}" for r in conflicts
                                                       for p, m in r.conflicts])
            if not changed:
                return StepResult("resources", "nothing")
            self._wait_cilium(api)
        self.log("  Cilium reports a node config per selected node, and the pinned Services hold their VIPs")
        changed += self.site.settle(self.log)
        return StepResult("resources", "done", changed)

    def _wait_cilium(self, api: Any) -> None:
        """What Cilium reports for the resources: node configs for the selected nodes, VIPs on pinned Services."""
        bgp = Bgp.read(self.rendered)
        nodes = list_objects(api, "v1", "Node")

        def selected() -> set[str]:
            out = set()
            for cc in bgp.cluster_configs:
                for n in nodes:
                    labels = (n.get("metadata") or {}).get("labels") or {}
                    if cc.node_selector is None or selector_matches(cc.node_selector, labels):
                        out.add(n["metadata"]["name"])
            return out

        want_nodes = selected()
        services, _ = read_services(self.rendered, [])
        pinned = {s.key: {v.ipv4 for v in s.vips if v.ipv4} for s in services
                  if s.type == "LoadBalancer" and s.source.split(" ")[0] in RESOURCE_FILES and s.vips}

        def reported() -> bool | NotYet:
            have = {o["metadata"]["name"] for o in list_objects(api, "cilium.io/v2", "CiliumBGPNodeConfig")}
            missing = sorted(want_nodes - have)
            waiting = []
            for key, ips in pinned.items():
                ns, name = key.split("/", 1)
                status, svc = request(api, "GET", f"/api/v1/namespaces/{ns}/services/{name}")
                held = {i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
                        or []} if status == 200 else set()
                if not ips <= held:
                    waiting.append(f"{key} holds {sorted(held) or 'nothing'}, pinned {sorted(ips)}")
            if missing or waiting:
                return NotYet("; ".join([f"no CiliumBGPNodeConfig for {', '.join(missing)}"] if missing else []
                                        + waiting))
            return True

        wait_until(reported, self.wait_timeout, 0.5, "what Cilium reports for the resources")

    def _first_server(self) -> str:
        order = self._node_order()
        return order[-1]

    def _cluster_token(self) -> bytes:
        first = self._first_server()
        with self.site.shell(self.targets.node(first)) as sh:
            token = must(sh, f"cat {K3S_SERVER_TOKEN}", f"reading the cluster's token on {first}").strip()
        if not token:
            raise StepRefused(f"{first}: {K3S_SERVER_TOKEN} is empty; is k3s initialized there?")
        return (token + "\n").encode()

    def apply_nodes(self) -> StepResult:
        changed = self.site.provision(self.log)
        order = self._node_order()
        token: bytes | None = None
        for node in order:
            target = self.targets.node(node)
            with self.site.shell(target) as sh:
                live_text = read_file(sh, K3S_CONFIG)
                wanted = self._wanted_config(node)
                token_file = wanted.get("token-file") if wanted.get("server") else None
                present = file_exists(sh, str(token_file)) if token_file else True
                todo = self._node_changes(node, live_text, present) or self._restart_change(node)
                if not todo:
                    continue
                problem = self._kube_proxy_problem(node, live_text)
                if problem:
                    raise StepRefused(problem)
                self.log(f"  {node}: " + "; ".join(c.render() for c in todo))
                if live_text != self._wanted_text(node):
                    write_file(sh, K3S_CONFIG, self._wanted_text(node).encode(), mode=0o600)
                    changed.append(f"{node}: wrote {K3S_CONFIG}")
                if token_file and not present:
                    token = token or self._cluster_token()
                    write_file(sh, str(token_file), token, mode=0o600)
                    changed.append(f"{node}: wrote {token_file}")
                changed += self.site.restart_k3s(node, sh, self.log)
            changed += self._wait_node(node)
        inventory = [n.name for n in self.site.model.nodes]
        for name in self._live_nodes():
            if name not in inventory:
                self.log(f"  retiring {name}")
                changed += self.site.retire(name, inventory, self.log)
        if not changed:
            return StepResult("nodes", "nothing")
        changed += self.site.settle(self.log)
        return StepResult("nodes", "done", changed)

    def _wait_node(self, node: str) -> list[str]:
        """Its apiserver healthy, the VIP answering, and its BGP session Established (when the gateway has it)."""
        t0 = time.monotonic()

        def readyz(ctx: Callable[[], Any], what: str) -> None:
            def ok() -> bool | NotYet:
                try:
                    with ctx() as api:
                        status, body = request(api, "GET", "/readyz")
                except LabToolError as exc:
                    return NotYet(str(exc)[:120])
                return True if status == 200 else NotYet(f"/readyz {status}")

            wait_until(ok, self.wait_timeout, 0.5, what)

        readyz(lambda: self.site.node_kube(node), f"{node}'s apiserver healthy")
        readyz(self.site.kube, "the apiserver VIP answering")
        address = next(str(n.address) for n in self.site.model.nodes if n.name == node)
        with self.site.shell(self.targets.gateway) as sh:
            if address in self._sessions(sh):
                self._wait_sessions(sh, {address}, f"{node}'s BGP session Established")
        return [f"{node}: apiserver healthy, VIP answers, session up ({time.monotonic() - t0:.1f} s)"]


class RolloutFailed(LabToolError):
    """A step failed; ``results`` says what was done and what was not. Its exit code is the cause's."""

    def __init__(self, results: list[StepResult], cause: LabToolError):
        done = [r.step for r in results if r.status in ("done", "nothing", "skipped")]
        not_run = [r.step for r in results if r.status == "not-run"]
        failed = next(r for r in results if r.status == "failed")
        super().__init__(f"rack.apply stopped at {failed.step}: {failed.error}"
                         + (f"; done: {', '.join(done)}" if done else "")
                         + (f"; not run: {', '.join(not_run)}" if not_run else ""), cause.details)
        self.results = results
        self.exit_code = cause.exit_code


def _namespaced_default(ref: tuple[str, str, str, str], wanted: set[tuple[str, str, str, str]]) -> bool:
    """A document without a namespace is applied to ``default``: the same object."""
    return (ref[0], ref[1], "", ref[3]) in wanted and ref[2] == "default"


__all__ = ["STEPS", "Change", "Plan", "Rollout", "RolloutFailed", "StepPlan", "StepRefused", "StepResult",
           "rendered_files"]
