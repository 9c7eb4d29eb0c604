"""The rollout's logic without Docker or a network: the FRR diff and its removals, the inventory's rack
section, OpenSSH's command line and its errors, the gateway step's control flow, and the node step's plan.

Rack inventories are exercised here only: no test contacts a rack address (the rollout's e2e tests run on
a lab, tests/test_rack_e2e.py).
"""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from conftest import TOPOLOGY
from generators.errors import EXIT_ENVIRONMENT, EXIT_FAILED, InputError, InventoryError
from generators.model import load_model
from generators.pipeline import render_inventory
from generators.rack.frrdiff import diff_bgp, removal_script
from generators.rack.gateway import FrrRefused, apply_gateway, plan_gateway
from generators.rack.rollout import K3S_CONFIG, Plan, Rollout, StepPlan, rendered_files
from generators.rack.shell import Result, SshShell, TargetUnreachable, read_file, write_file
from generators.rack.site import RackSite

SEED_FRR = render_inventory(TOPOLOGY / "rack.yml")["frr/frr.conf"]  # the rack's gateway block, as rendered
# FRR 8.4.4's `show running-config` of a gateway configured with SEED_FRR (measured in the lab): its own
# header, neighbors sorted, `!` and `exit` lines
RUNNING = """Building configuration...

Current configuration:
!
frr version 8.4.4
frr defaults traditional
hostname ucg
service integrated-vtysh-config
!
router bgp 64512
 bgp router-id 10.31.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor k3s-nodes peer-group
 neighbor k3s-nodes remote-as 65000
 neighbor 10.31.0.132 peer-group k3s-nodes
 neighbor 10.31.0.161 peer-group k3s-nodes
 neighbor 10.31.0.218 peer-group k3s-nodes
 !
 address-family ipv4 unicast
  neighbor k3s-nodes activate
  neighbor k3s-nodes soft-reconfiguration inbound
 exit-address-family
exit
!
end
"""


# ----------------------------------------------------------------------------- the FRR diff
def test_running_config_equals_the_rendered_block_despite_order_and_punctuation():
    d = diff_bgp(RUNNING, SEED_FRR)
    assert (d.added, d.removed, d.changes, d.replaces_router) == ([], [], 0, False)


def test_a_new_node_is_one_added_line_and_a_dropped_one_is_removed_whole():
    wanted = SEED_FRR.replace(" neighbor 10.31.0.132 peer-group k3s-nodes\n",
                              " neighbor 10.31.0.150 peer-group k3s-nodes\n")
    d = diff_bgp(RUNNING, wanted)
    assert [x.show() for x in d.added] == ["neighbor 10.31.0.150 peer-group k3s-nodes"]
    assert [x.show() for x in d.removed] == ["neighbor 10.31.0.132 peer-group k3s-nodes"]
    script = removal_script(d, RUNNING, wanted)
    assert script == "router bgp 64512\n no neighbor 10.31.0.132\nexit\n"  # `vtysh -f` alone would keep it


def test_removals_per_context_and_negated_lines():
    live = RUNNING.replace(" neighbor k3s-nodes remote-as 65000\n",
                           " neighbor k3s-nodes remote-as 65000\n neighbor k3s-nodes timers 3 9\n")
    wanted = SEED_FRR.replace(" no bgp ebgp-requires-policy\n", "").replace(
        "  neighbor k3s-nodes soft-reconfiguration inbound\n", "")
    d = diff_bgp(live, wanted)
    assert {x.show() for x in d.removed} == {
        "no bgp ebgp-requires-policy", "neighbor k3s-nodes timers 3 9",
        "address-family ipv4 unicast: neighbor k3s-nodes soft-reconfiguration inbound"}
    script = removal_script(d, live, wanted).splitlines()
    assert script[0] == "router bgp 64512" and script[-1] == "exit"
    assert " bgp ebgp-requires-policy" in script  # the undo of a `no` line is the line itself
    assert " no neighbor k3s-nodes timers 3 9" in script
    af = script.index(" address-family ipv4 unicast")
    assert script[af + 1:af + 3] == ["  no neighbor k3s-nodes soft-reconfiguration inbound", " exit-address-family"]


def test_a_peer_group_goes_after_its_members():
    wanted = "router bgp 64512\n bgp router-id 10.31.0.1\n"
    d = diff_bgp(RUNNING, wanted)
    lines = removal_script(d, RUNNING, wanted).splitlines()
    members = [i for i, x in enumerate(lines) if x.startswith(" no neighbor 10.31.0.")]
    group = lines.index(" no neighbor k3s-nodes peer-group")
    assert len(members) == 3 and max(members) < group
    assert not any("activate" in x for x in lines)  # went with the group


def test_another_asn_replaces_the_block():
    wanted = SEED_FRR.replace("router bgp 64512", "router bgp 64513")
    d = diff_bgp(RUNNING, wanted)
    assert d.replaces_router and d.changes == len(d.added) + 1
    assert removal_script(d, RUNNING, wanted) == "no router bgp 64512\n"
    assert d.lines()[0].startswith("- router bgp 64512 (the whole block")


def test_a_gateway_without_bgp_gets_the_whole_block():
    d = diff_bgp("hostname ucg\n!\nend\n", SEED_FRR)
    assert d.live_title is None and len(d.added) == 10 and removal_script(d, "", SEED_FRR) == ""


# ----------------------------------------------------------------------------- the inventory's rack section
def test_rack_targets_default_to_the_inventory_addresses():
    rack = load_model(TOPOLOGY / "rack.yml").rack
    assert rack is not None
    assert (rack.gateway.host, rack.gateway.user, rack.gateway.host_key_policy) == ("10.31.0.1", "root", "strict")
    assert [(n.name, n.host) for n in rack.nodes] == [("cat01", "10.31.0.218"), ("cat02", "10.31.0.161"),
                                                      ("cat03", "10.31.0.132")]
    assert rack.cluster.server is None and rack.cluster.field_manager == "k3s-bgp-lab"


def _inventory(tmp_path: Path, rack: dict) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump({"include": str(TOPOLOGY / "rack.yml"), "rack": rack}))
    return path


def test_rack_settings_inherit_from_ssh_and_override_per_target(tmp_path):
    rack = load_model(_inventory(tmp_path, {
        "ssh": {"user": "admin", "key_file": "~/.ssh/rack", "known_hosts": "~/.ssh/rack_hosts"},
        "gateway": {"user": "root", "port": 2222},
        "nodes": {"cat02": {"host": "cat02.lan", "host_key_policy": "accept-new"}},
        "cluster": {"server": "https://10.31.0.218:6443", "context": "ber1"},
    })).rack
    assert rack is not None
    assert (rack.gateway.user, rack.gateway.port, rack.gateway.key_file) == ("root", 2222, "~/.ssh/rack")
    cat02 = rack.node("cat02")
    assert (cat02.host, cat02.user, cat02.host_key_policy, cat02.known_hosts) == (
        "cat02.lan", "admin", "accept-new", "~/.ssh/rack_hosts")
    assert rack.node("cat01").host == "10.31.0.218"
    assert (rack.cluster.server, rack.cluster.context) == ("https://10.31.0.218:6443", "ber1")


@pytest.mark.parametrize("rack,where,why", [
    ({"ssh": {"key_file": "-----BEGIN OPENSSH PRIVATE KEY-----"}}, "rack.ssh.key_file", "no secret goes in"),
    ({"gateway": {"host_key_policy": "no"}}, "rack.gateway.host_key_policy", "strict, accept-new"),
    ({"nodes": {"cat09": {}}}, "rack.nodes.cat09", "unknown key"),
    ({"cluster": {"server": "http://10.31.0.80:6443"}}, "rack.cluster.server", "https:// URL"),
    ({"ssh": {"connect_timeout": 0}}, "rack.ssh.connect_timeout", "out of range"),
    ({"gateway": {"passwd": "x"}}, "rack.gateway.passwd", "unknown key"),
])
def test_bad_rack_settings_name_the_field(tmp_path, rack, where, why):
    with pytest.raises(InventoryError) as err:
        load_model(_inventory(tmp_path, rack))
    text = str(err.value)
    assert where in text and why in text
    assert "-----BEGIN" not in text  # key material is never echoed back


# ----------------------------------------------------------------------------- OpenSSH
def _rack_target(**kw):
    from generators.model import SshTarget

    return SshTarget(name=kw.pop("name", "cat01"), host=kw.pop("host", "10.31.0.218"), **kw)


def test_ssh_options_never_prompt_and_check_host_keys():
    sh = SshShell(_rack_target(key_file="/k/id", known_hosts="/k/hosts", connect_timeout=7),
                  proxy_command="docker exec -i c python3 /opt/lab/relay.py %h %p 7", ssh="ssh")
    argv = sh.argv("true")
    opts = dict(a.split("=", 1) for a in argv[2::2] if "=" in a and argv[argv.index(a) - 1] == "-o")
    assert opts["BatchMode"] == "yes" and opts["StrictHostKeyChecking"] == "yes"
    assert opts["UserKnownHostsFile"] == "/k/hosts" and opts["IdentityFile"] == "/k/id"
    assert opts["ConnectTimeout"] == "7" and opts["ProxyCommand"].endswith("%h %p 7")
    assert argv[-5:] == ["-p", "22", "root@10.31.0.218", "--", "true"]
    assert "ControlMaster=auto" not in argv  # only inside `with`: one connection per target while open
    with sh:
        assert "ControlMaster=auto" in sh.argv("true")
    accept = SshShell(_rack_target(host_key_policy="accept-new"), ssh="ssh").argv("true")
    assert "StrictHostKeyChecking=accept-new" in accept


def _fake_ssh(tmp_path: Path, stderr: str, code: int, stdout: str = "") -> str:
    """TEST DOUBLE of OpenSSH's client: prints what ssh prints for one situation and exits with its code."""
    path = tmp_path / "ssh"
    path.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '%s' {json.dumps(stdout)}\n"
                    f"printf '%s\\n' {json.dumps(stderr)} >&2\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.parametrize("stderr,why", [
    ("ssh: connect to host 10.31.0.218 port 22: Connection refused", "nothing listens"),
    ("relay: connecting to 10.31.0.218:22 timed out after 10s\nConnection closed by UNKNOWN port 65535",
     "did not answer in time"),
    ("Host key verification failed.", "host key is not in known_hosts"),
    ("root@10.31.0.218: Permission denied (publickey).", "refused the login"),
])
def test_ssh_failures_are_environment_problems_naming_the_target(tmp_path, stderr, why):
    sh = SshShell(_rack_target(), ssh=_fake_ssh(tmp_path, stderr, 255))
    with pytest.raises(TargetUnreachable) as err:
        sh.run("cat /etc/hostname")
    assert err.value.exit_code == EXIT_ENVIRONMENT
    assert "cat01 (root@10.31.0.218:22)" in str(err.value) and why in str(err.value)


def test_a_failing_remote_command_is_a_result_not_an_ssh_error(tmp_path):
    sh = SshShell(_rack_target(), ssh=_fake_ssh(tmp_path, "cat: /x: No such file or directory", 1))
    assert sh.run("cat /x") == Result(1, "", "cat: /x: No such file or directory\n")


def test_the_relay_line_is_not_an_error(tmp_path):
    sh = SshShell(_rack_target(), ssh=_fake_ssh(tmp_path, "relay: connected 10.31.0.218:22", 0, "ok"))
    assert sh.run("echo ok") == Result(0, "ok", "")


# ----------------------------------------------------------------------------- a fake gateway
class FakeFrr:
    """TEST DOUBLE of a gateway shell (not FRR): answers show running-config from a script of states, and
    records what was run. ``refuse`` makes `vtysh --dryrun` fail like FRR 8.4.4 on an unknown command."""

    name = "gateway"

    def __init__(self, states: list[str], refuse: str | None = None, apply_fails: bool = False):
        self.states, self.refuse, self.apply_fails = list(states), refuse, apply_fails
        self.ran: list[str] = []
        self.files: dict[str, bytes] = {}

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Result:
        self.ran.append(command)
        if command.startswith("umask 077"):
            self.files[command.split("cat > ")[1].split(" ")[0]] = stdin or b""
            return Result(0, "", "")
        if command.startswith("mktemp"):
            return Result(0, "/tmp/k3s-bgp-lab-frr.test\n", "")
        if command == "vtysh -c 'show running-config'":
            text = self.states[0]
            if len(self.states) > 1 and any(c.startswith("vtysh -f") for c in self.ran):
                self.states.pop(0)
                text = self.states[0]
            return Result(0, text, "")
        if command.startswith("vtysh --dryrun") and self.refuse:
            return Result(2, f"line 7: % Unknown command[25]: {self.refuse}\n", "")
        if command.startswith("vtysh -f") and self.apply_fails:
            return Result(1, "% Create the peer-group first\n", "")
        return Result(0, "", "")


def test_a_file_frr_refuses_changes_nothing_and_shows_frrs_line():
    wanted = SEED_FRR + " neighbor k3s-nodes timers 3 bogus\n"
    fake = FakeFrr([RUNNING.replace(" neighbor 10.31.0.132 peer-group k3s-nodes\n", "")],
                   refuse="neighbor k3s-nodes timers 3 bogus")
    plan = plan_gateway(fake, wanted)
    with pytest.raises(FrrRefused) as err:
        apply_gateway(fake, plan, log=lambda _m: None)
    assert err.value.exit_code == EXIT_FAILED and "nothing was changed" in str(err.value)
    assert any("Unknown command" in line for line in err.value.details)
    assert not any(c.startswith("vtysh -f") or "write memory" in c for c in fake.ran)


def test_apply_removes_then_adds_then_saves_and_checks_the_result():
    live = RUNNING.replace(" neighbor 10.31.0.132 peer-group k3s-nodes\n",
                           " neighbor 10.31.0.99 peer-group k3s-nodes\n")
    fake = FakeFrr([live, RUNNING])
    changed = apply_gateway(fake, plan_gateway(fake, SEED_FRR), log=lambda _m: None)
    applied = [c for c in fake.ran if c.startswith("vtysh -f")]
    assert applied == ["vtysh -f /tmp/k3s-bgp-lab-frr.test/remove.conf", "vtysh -f /tmp/k3s-bgp-lab-frr.test/frr.conf"]
    assert fake.files["/tmp/k3s-bgp-lab-frr.test/remove.conf.k3s-bgp-lab.tmp"] == (
        b"router bgp 64512\n no neighbor 10.31.0.99\nexit\n")
    assert "vtysh -c 'write memory'" in fake.ran and changed and "+1 -1" in changed[0]
    assert fake.ran[-1].startswith("rm -rf /tmp/k3s-bgp-lab-frr.test")


def test_nothing_to_change_runs_nothing():
    fake = FakeFrr([RUNNING])
    assert apply_gateway(fake, plan_gateway(fake, SEED_FRR), log=lambda _m: None) == []
    assert fake.ran == ["vtysh -c 'show running-config'"]


def test_a_half_applied_block_is_restored_and_the_step_fails():
    live = RUNNING.replace(" neighbor 10.31.0.132 peer-group k3s-nodes\n", "")
    fake = FakeFrr([live], apply_fails=True)
    with pytest.raises(FrrRefused) as err:
        apply_gateway(fake, plan_gateway(fake, SEED_FRR), log=lambda _m: None)
    assert "did not take" in str(err.value) and "Create the peer-group first" in " ".join(err.value.details)
    assert "vtysh -c 'write memory'" not in fake.ran


# ----------------------------------------------------------------------------- file helpers
class Recorder:
    """TEST DOUBLE of a shell: records commands and stdin, answers from a table."""

    name = "cat01"

    def __init__(self, answers: dict[str, Result] | None = None):
        self.answers = answers or {}
        self.ran: list[tuple[str, bytes | None]] = []

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Result:
        self.ran.append((command, stdin))
        for prefix, result in self.answers.items():
            if command.startswith(prefix):
                return result
        return Result(0, "", "")


def test_write_file_is_atomic_private_and_keeps_the_secret_off_the_command_line():
    sh = Recorder()
    write_file(sh, "/etc/rancher/k3s/cluster-token", b"K10abc::server:s3cret\n", mode=0o600)
    (command, stdin), = sh.ran
    assert "s3cret" not in command and stdin == b"K10abc::server:s3cret\n"
    assert "umask 077" in command and "chmod 600" in command and "mv -f" in command


def test_read_file_tells_missing_from_empty():
    assert read_file(Recorder({"if [ -e": Result(44, "", "")}), K3S_CONFIG) is None
    assert read_file(Recorder({"if [ -e": Result(0, "", "")}), K3S_CONFIG) == ""


# ----------------------------------------------------------------------------- the node step's plan
class FakeSite:
    """TEST DOUBLE of a Site for the node step: machines are dicts of files; the API's Node list is given."""

    is_lab = False

    def __init__(self, inventory: Path, machines: dict[str, dict[str, str]], cluster_nodes: list[str],
                 kube_proxy_replacement: object = None):
        self.model = load_model(inventory)
        self.label = "fake"
        self.machines, self.cluster_nodes = machines, cluster_nodes
        self.kpr = kube_proxy_replacement

    def targets(self):
        assert self.model.rack is not None
        return self.model.rack

    from contextlib import contextmanager

    @contextmanager
    def shell(self, target):
        files = self.machines[target.name]

        class Sh:
            name = target.name

            def run(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Result:
                path = command.split("'")[1] if "'" in command else command.split()[-1]
                path = path if path.startswith("/") else command.split()[3]
                if command.startswith("if [ -e"):
                    return Result(0, files[path], "") if path in files else Result(44, "", "")
                if command.startswith("test -e"):
                    return Result(0 if command.split()[-1] in files else 1, "", "")
                raise AssertionError(command)

        yield Sh()

    @contextmanager
    def kube(self):
        yield None

    def machine_exists(self, node: str) -> bool:
        return node in self.machines

    def live_cilium_values(self):
        return None if self.kpr is None else {"kubeProxyReplacement": self.kpr}


@pytest.fixture
def rendered(tmp_path):
    site = FakeSite(TOPOLOGY / "rack.yml", {}, [])
    return rendered_files(site, tmp_path / "r")  # type: ignore[arg-type]


def _plan_nodes(site: FakeSite, rendered, monkeypatch, down: tuple[str, ...] = ()) -> StepPlan:
    rollout = Rollout(site, rendered, log=lambda _m: None)  # type: ignore[arg-type]
    monkeypatch.setattr(rollout, "_live_nodes", lambda: site.cluster_nodes)
    monkeypatch.setattr(rollout, "_node_ready", lambda node: node not in down)  # its apiserver's /readyz
    return rollout.plan_nodes()


def _machines(rendered, **override: dict[str, str]) -> dict[str, dict[str, str]]:
    out = {}
    for node in ("cat01", "cat02", "cat03"):
        out[node] = {K3S_CONFIG: (rendered.root / f"k3s/{node}/config.yaml").read_text(),
                     "/etc/rancher/k3s/cluster-token": "t"}
        out[node].update(override.get(node, {}))
    return out


def test_a_converged_rack_has_nothing_to_change_in_its_nodes(rendered, monkeypatch):
    site = FakeSite(TOPOLOGY / "rack.yml", _machines(rendered), ["cat01", "cat02", "cat03"], True)
    plan = _plan_nodes(site, rendered, monkeypatch)
    assert plan.changes == [] and plan.problems == []


def test_a_node_whose_files_are_right_but_whose_k3s_does_not_answer_is_restarted(rendered, monkeypatch):
    """A restart that failed half way leaves the files as rendered: the next plan still says what is left."""
    site = FakeSite(TOPOLOGY / "rack.yml", _machines(rendered), ["cat01", "cat02", "cat03"], True)
    plan = _plan_nodes(site, rendered, monkeypatch, down=("cat02",))
    assert [(c.target, c.what, c.action) for c in plan.changes] == [("cat02", "k3s", "restart")]


def test_node_changes_are_field_paths_and_missing_tokens_never_shown(rendered, monkeypatch):
    cat02 = yaml.safe_load((rendered.root / "k3s/cat02/config.yaml").read_text())
    cat02["tls-san"] = cat02["tls-san"][:-1]
    machines = _machines(rendered, cat02={K3S_CONFIG: yaml.safe_dump(cat02)})
    del machines["cat03"]["/etc/rancher/k3s/cluster-token"]
    site = FakeSite(TOPOLOGY / "rack.yml", machines, ["cat01", "cat02", "cat03", "cat09"], True)
    plan = _plan_nodes(site, rendered, monkeypatch)
    got = [(c.target, c.what, c.action, tuple(c.fields)) for c in plan.changes]
    assert ("cat02", K3S_CONFIG, "change", (f"tls-san[{len(cat02['tls-san'])}]",)) in got
    assert any(t == "cat03" and w == "/etc/rancher/k3s/cluster-token" and a == "create" for t, w, a, _ in got)
    assert ("cat09", "Node/cat09", "retire", ("etcd member", "Node")) in got
    assert [c.target for c in plan.changes if c.what == K3S_CONFIG] == ["cat02"]
    assert "t" not in json.dumps([c.to_json() for c in plan.changes if "token" in c.what]).split('"')


def test_nodes_go_one_at_a_time_with_the_first_server_last(rendered):
    site = FakeSite(TOPOLOGY / "rack.yml", {}, [])
    assert Rollout(site, rendered)._node_order() == ["cat02", "cat03", "cat01"]  # type: ignore[arg-type]


@pytest.mark.parametrize("kpr,refused", [(True, False), ("true", False), (False, True), (None, True)])
def test_kube_proxy_goes_only_after_cilium_replaces_it(rendered, monkeypatch, kpr, refused):
    """The seed's migration order: disable-kube-proxy only once the live values have kube-proxy replacement."""
    old = {}
    for node in ("cat01", "cat02", "cat03"):
        cfg = yaml.safe_load((rendered.root / f"k3s/{node}/config.yaml").read_text())
        assert cfg.get("disable-kube-proxy") is True  # the seed's rendering drops kube-proxy
        cfg.pop("disable-kube-proxy")
        old[node] = {K3S_CONFIG: yaml.safe_dump(cfg)}
    site = FakeSite(TOPOLOGY / "rack.yml", _machines(rendered, **old), ["cat01", "cat02", "cat03"], kpr)
    plan = _plan_nodes(site, rendered, monkeypatch)
    assert bool(plan.problems) is refused
    if refused:
        assert "disable-kube-proxy: true while" in plan.problems[0] and "--only cilium-values" in plan.problems[0]


def test_plan_json_counts_every_change_and_lists_them_per_target():
    from generators.rack.rollout import Change

    plan = Plan("rack ber1", "topology/rack.yml", [
        StepPlan("gateway", [Change("gateway", "gateway", "frr/frr.conf", "add", ["neighbor 10.31.0.150 ..."])]),
        StepPlan("cilium-values", skipped="helm is not on the PATH"),
        StepPlan("resources", [Change("resources", "cluster", "CiliumBGPPeerConfig/p", "conflict",
                                      ["spec.timers (owned by argocd)"])], problems=["p: owned by argocd"]),
    ])
    doc = plan.to_json()
    assert doc["schema"] == "rack-plan/1" and doc["changes"] == 2 and len(doc["targets"]) == 2
    assert doc["targets"][1] == {"step": "resources", "target": "cluster", "what": "CiliumBGPPeerConfig/p",
                                 "action": "conflict", "fields": ["spec.timers (owned by argocd)"]}
    assert doc["problems"] == ["p: owned by argocd"] and "refused" in plan.render()


# ----------------------------------------------------------------------------- the rack's Site: helm, kubeconfig
def _fake_helm(tmp_path: Path, values: dict | None, fail: str = "") -> Path:
    """TEST DOUBLE of helm: records its arguments; `get values` prints ``values`` as JSON (or fails)."""
    log = tmp_path / "helm.args"
    script = tmp_path / "bin" / "helm"
    script.parent.mkdir(exist_ok=True)
    body = (f"#!/bin/sh\necho \"$@\" >> {log}\n"
            f"if [ \"$1\" = get ]; then {'echo ' + json.dumps(fail) + ' >&2; exit 1' if fail else ''}\n"
            f"printf '%s' {json.dumps(json.dumps(values))}; fi\n")
    script.write_text(body)
    script.chmod(0o755)
    return log


def _rack_site(tmp_path: Path, monkeypatch, **cluster):
    inv = _inventory(tmp_path, {"cluster": {"kubeconfig": str(tmp_path / "kubeconfig"), "context": "ber1",
                                            **cluster}})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    return RackSite(load_model(inv))


def test_live_cilium_values_come_from_helm_with_the_inventorys_kubeconfig(tmp_path, monkeypatch):
    log = _fake_helm(tmp_path, {"kubeProxyReplacement": True})
    site = _rack_site(tmp_path, monkeypatch)
    assert site.live_cilium_values() == {"kubeProxyReplacement": True}
    args = log.read_text().split()
    assert args[:4] == ["get", "values", "cilium", "-n"] and "--kube-context" in args and "ber1" in args
    assert str(tmp_path / "kubeconfig") in args


def test_no_release_yet_is_empty_values_and_no_helm_is_unknown(tmp_path, monkeypatch):
    _fake_helm(tmp_path, None, fail="Error: release: not found")
    assert _rack_site(tmp_path, monkeypatch).live_cilium_values() == {}
    (tmp_path / "bin" / "helm").unlink()
    assert _rack_site(tmp_path, monkeypatch).live_cilium_values() is None  # the plan then says how


def test_cilium_values_are_applied_with_the_pinned_version_and_the_rendered_file(tmp_path, monkeypatch):
    log = _fake_helm(tmp_path, {})
    site = _rack_site(tmp_path, monkeypatch)
    site.apply_cilium_values(tmp_path / "values.yaml", "1.19.3", log=lambda _m: None)
    args = log.read_text().split()
    assert args[:4] == ["upgrade", "--install", "cilium", "cilium/cilium"]
    assert args[args.index("--version") + 1] == "1.19.3" and str(tmp_path / "values.yaml") in args


def test_a_missing_kubeconfig_names_the_field(tmp_path, monkeypatch):
    site = _rack_site(tmp_path, monkeypatch)
    with pytest.raises(InputError) as err:
        with site.kube():
            pass
    assert "rack.cluster.kubeconfig" in str(err.value) and "does not exist" in str(err.value)
