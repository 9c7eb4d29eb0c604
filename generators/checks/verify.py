"""`invoke verify`: named checks, each with pass/fail and evidence.

Collection (commands run inside lab containers) is separate from the checks (pure functions on
the collected JSON), so every check is unit-tested on recorded output without Docker. Sessions are
judged by FRR's ``bgpState``; ECMP by the set of next-hops equalling the set of nodes expected to
advertise the VIP.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from generators.readback.frrstate import (
    ESTABLISHED,
    kernel_next_hops,
    needs_nexthop_objects,
    nexthop_objects,
    route_next_hops,
    session_states,
)


@dataclass
class CheckResult:
    name: str
    ok: bool
    summary: str
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Expectation:
    """What the rendered config says the lab must show."""

    peers: frozenset[str]  # node IPs that must have an Established session
    next_hops: dict[str, frozenset[str]]  # VIP -> node IPs that advertise it (the twin's Cilium semantics)
    intended: dict[str, str]  # VIP -> role, every pinned LoadBalancer VIP the design means to publish
    not_advertised: dict[str, str]  # VIP -> why the config keeps it off the wire
    node_names: dict[str, str]  # node IP -> node name
    apiserver_vip: str
    apiserver_port: int
    dns_name: str
    traefik_vip: str


# ----------------------------------------------------------------------------- pure checks
def check_sessions(neighbors: dict, exp: Expectation) -> CheckResult:
    states = session_states(neighbors)
    missing = sorted(exp.peers - set(states))
    down = sorted(ip for ip in exp.peers if states.get(ip) not in (None, ESTABLISHED))
    ok = not missing and not down
    summary = (
        f"{len(exp.peers)} sessions Established"
        if ok
        else "; ".join(
            [
                *(f"{ip} ({exp.node_names.get(ip, '?')}) is {states[ip]}" for ip in down),
                *(f"{ip} ({exp.node_names.get(ip, '?')}) is not configured on the gateway" for ip in missing),
            ]
        )
    )
    return CheckResult("bgp-sessions-established", ok, summary, {"bgpState": states})


def _names(ips: set[str] | frozenset[str], exp: Expectation) -> list[str]:
    return sorted(f"{ip} ({exp.node_names.get(ip, '?')})" for ip in ips)


def check_design_advertises(vip: str, exp: Expectation) -> CheckResult:
    role = exp.intended[vip]
    if vip in exp.not_advertised or not exp.next_hops.get(vip):
        why = exp.not_advertised.get(vip, "no node advertises it")
        return CheckResult(
            f"advertised:{role}", False, f"{role} VIP {vip} is not advertised: {why}", {"vip": vip, "cause": why}
        )
    return CheckResult(
        f"advertised:{role}",
        True,
        f"{role} VIP {vip} advertised by {len(exp.next_hops[vip])} nodes",
        {"vip": vip, "nodes": _names(exp.next_hops[vip], exp)},
    )


def check_bgp_next_hops(vip: str, route_json: dict, exp: Expectation) -> CheckResult:
    role = exp.intended.get(vip, vip)
    hops, _ = route_next_hops(route_json, f"{vip}/32")
    want = set(exp.next_hops.get(vip, frozenset()))
    ok = hops == want
    summary = (
        f"{vip}/32 via {', '.join(_names(hops, exp)) or 'nothing'}"
        if ok
        else f"{vip}/32 next-hops {_names(hops, exp)} != expected {_names(want, exp)}"
        + (f"; missing {_names(want - hops, exp)}" if want - hops else "")
        + (f"; unexpected {_names(hops - want, exp)}" if hops - want else "")
    )
    return CheckResult(
        f"bgp-next-hops:{role}", ok, summary, {"frr": sorted(hops), "expected": sorted(want), "route": route_json}
    )


def check_fib(
    vip: str,
    route_json: dict,
    ip_route_json: list,
    exp: Expectation,
    nexthop_objects: dict[int, list[str]] | None = None,
) -> CheckResult:
    role = exp.intended.get(vip, vip)
    _, frr_fib = route_next_hops(route_json, f"{vip}/32")
    kernel = kernel_next_hops(ip_route_json, objects=nexthop_objects)
    want = set(exp.next_hops.get(vip, frozenset()))
    ok = kernel == want and frr_fib == want
    summary = (
        f"kernel FIB {vip} via {len(kernel)} next-hops"
        if ok
        else f"kernel FIB {vip} via {_names(kernel, exp)}, FRR fib-flagged {_names(frr_fib, exp)}, "
        f"expected {_names(want, exp)}"
    )
    return CheckResult(
        f"fib:{role}",
        ok,
        summary,
        {"kernel": sorted(kernel), "frr_fib": sorted(frr_fib), "expected": sorted(want), "ip_route": ip_route_json},
    )


def check_received_prefixes(bgp_table: dict, exp: Expectation) -> CheckResult:
    expected = {f"{vip}/32" for vip, hops in exp.next_hops.items() if hops}
    got = set((bgp_table.get("routes") or {}).keys())
    unexpected, missing = sorted(got - expected), sorted(expected - got)
    ok = not unexpected
    summary = f"received {sorted(got)}" if ok else f"unexpected prefixes received: {unexpected}"
    return CheckResult(
        "no-unexpected-prefixes",
        ok,
        summary,
        {"received": sorted(got), "expected": sorted(expected), "missing": missing},
    )


def check_tls(probes: list[dict], exp: Expectation) -> CheckResult:
    """Each probe: {url, ok, status, body, served_by, error} from the client."""
    bad = [p for p in probes if not (p.get("ok") and p.get("status") == 200 and str(p.get("body", "")).strip() == "ok")]
    ok = bool(probes) and not bad
    summary = (
        "TLS verified against the lab CA via " + ", ".join(p["url"] for p in probes)
        if ok
        else "; ".join(f"{p['url']}: {p.get('error') or p.get('status')}" for p in bad) or "no probe ran"
    )
    return CheckResult("apiserver-tls-healthz", ok, summary, {"probes": probes})


def check_http_spread(answers: list[dict], exp: Expectation) -> CheckResult:
    """Each answer: {ok, served_by, error}. Every advertising node must answer at least once."""
    want = {exp.node_names[ip] for ip in exp.next_hops.get(exp.traefik_vip, frozenset()) if ip in exp.node_names}
    seen = {str(a.get("served_by") or "") for a in answers if a.get("ok")}
    failed = [a for a in answers if not a.get("ok")]
    ok = bool(want) and seen == want and not failed
    summary = (
        f"http://{exp.traefik_vip}/ answered by {sorted(seen)} over {len(answers)} new connections"
        if ok
        else f"http://{exp.traefik_vip}/: answered by {sorted(s for s in seen if s)}, expected {sorted(want)}; "
        f"{len(failed)} of {len(answers)} failed"
    )
    counts: dict[str, int] = {}
    for a in answers:
        key = a.get("served_by") if a.get("ok") else f"error: {a.get('error')}"
        counts[str(key)] = counts.get(str(key), 0) + 1
    return CheckResult("traefik-http-ecmp", ok, summary, {"answers_by_node": counts})


# ----------------------------------------------------------------------------- collection
class LabTarget(Protocol):
    """What verify needs of a running lab; the drill's ``Lab`` extends it with the fault primitives."""

    @property
    def client(self) -> str: ...

    @property
    def gateway(self) -> str: ...

    @property
    def ca_path_in_client(self) -> str: ...

    def exec(self, node: str, argv: list[str], timeout: float = 30) -> Any: ...

    def vtysh_json(self, command: str, timeout: float = 15) -> Any: ...


HTTP_FAILURES_KEPT = 3  # failed HTTP attempts the probe records before it stops (the evidence of a failure)

# A stdlib-only probe run inside `client` (arguments by argv, never spliced into code).
PROBE = r'''
import json, socket, ssl, sys, urllib.request
mode, rest = sys.argv[1], sys.argv[2:]
out = []
if mode == "tls":
    ca, port, vip, name = rest
    ctx = ssl.create_default_context(cafile=ca)
    for host in (vip, name):
        url = f"https://{host}:{port}/healthz"
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                out.append({"url": url, "ok": True, "status": r.status, "body": r.read().decode(),
                            "served_by": r.headers.get("X-Served-By")})
        except Exception as e:
            out.append({"url": url, "ok": False, "error": f"{type(e).__name__}: {e}"})
else:
    vip, n, max_failed = rest[0], int(rest[1]), int(rest[2])
    for i in range(n):
        try:
            with urllib.request.urlopen(f"http://{vip}/", timeout=3) as r:
                body = r.read().decode()
                served = r.headers.get("X-Served-By") or body.strip().split()[-1]
                out.append({"ok": True, "status": r.status, "served_by": served})
        except Exception as e:
            out.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
            if sum(1 for a in out if not a["ok"]) >= max_failed:
                break
print(json.dumps(out))
'''


def gateway_nexthop_objects(lab: LabTarget) -> dict[int, list[str]]:
    """The gateway kernel's nexthop objects (``ip -j nexthop show``), for routes that name only an ``nhid``."""
    res = lab.exec(lab.gateway, ["ip", "-j", "nexthop", "show"])
    return nexthop_objects(json.loads(res.stdout or "[]")) if res.exit_code == 0 else {}


def _client_probe(lab: LabTarget, args: list[str], timeout: float) -> list[dict]:
    res = lab.exec(lab.client, ["python3", "-c", PROBE, *args], timeout=timeout)
    if res.exit_code != 0:
        return [{"ok": False, "error": f"probe exited {res.exit_code}: {res.stderr.strip()[-300:]}", "url": args[0]}]
    return json.loads(res.stdout)


def collect(lab: LabTarget, exp: Expectation, http_attempts: int = 30) -> dict:
    vips = sorted(exp.intended)
    obs: dict[str, Any] = {
        "neighbors": lab.vtysh_json("show bgp neighbors json"),
        "bgp_table": lab.vtysh_json("show bgp ipv4 unicast json"),
        "routes": {vip: lab.vtysh_json(f"show ip route {vip}/32 json") for vip in vips},
        "fib": {},
    }
    for vip in vips:
        res = lab.exec(lab.gateway, ["ip", "-j", "route", "show", f"{vip}/32"])
        obs["fib"][vip] = json.loads(res.stdout or "[]") if res.exit_code == 0 else []
    obs["nexthops"] = gateway_nexthop_objects(lab) if any(needs_nexthop_objects(r) for r in obs["fib"].values()) else {}
    obs["tls"] = _client_probe(
        lab, ["tls", lab.ca_path_in_client, str(exp.apiserver_port), exp.apiserver_vip, exp.dns_name], 30
    )
    # check_http_spread fails on any failed connection: after a few, more attempts cannot change the verdict
    # (an unreachable VIP costs up to 3 s per attempt)
    obs["http"] = _client_probe(
        lab, ["http", exp.traefik_vip, str(http_attempts), str(HTTP_FAILURES_KEPT)], 20 + 3 * http_attempts
    )
    return obs


def run_checks(obs: dict, exp: Expectation) -> list[CheckResult]:
    results = [check_sessions(obs["neighbors"], exp)]
    for vip in sorted(exp.intended):
        results.append(check_design_advertises(vip, exp))
        results.append(check_bgp_next_hops(vip, obs["routes"][vip], exp))
        results.append(check_fib(vip, obs["routes"][vip], obs["fib"][vip], exp, obs.get("nexthops")))
    results.append(check_received_prefixes(obs["bgp_table"], exp))
    results.append(check_tls(obs["tls"], exp))
    if exp.next_hops.get(exp.traefik_vip):
        results.append(check_http_spread(obs["http"], exp))
    else:
        results.append(
            CheckResult(
                "traefik-http-ecmp",
                False,
                f"http://{exp.traefik_vip}/ not probed: the VIP is not advertised",
                {"answers": obs["http"][:3]},
            )
        )
    return results


def format_results(results: list[CheckResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{'PASS' if r.ok else 'FAIL'}  {r.name:<32} {r.summary}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


def results_json(results: list[CheckResult]) -> str:
    return json.dumps(
        {"ok": all(r.ok for r in results), "checks": [asdict(r) for r in results]},
        indent=2,
        sort_keys=True,
        default=str,
    )
