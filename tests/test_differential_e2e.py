"""The differential corpus (tests/differential.py) on a real Cilium lab: every mutation judged by the Python
twin and by Cilium's own code, and the two compared.

One lab comes up; each mutation is rehearsed on it the way a user rehearses hand-written files
(``lab-up --rendered DIR``), with what the previous mutation added and this one does not have deleted.
The results go to ``build/differential/results.json`` (and docs/DIFFERENTIAL.md holds the last run).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from differential import MUTATIONS, cilium_observation, differences, lb_service_keys, twin_observation, write

from conftest import ROOT, TOPOLOGY
from generators.cluster.apply import delete_documents
from generators.errors import LabToolError
from generators.gen import render_inventory
from generators.lab.expect import cilium_states
from generators.lab.lifecycle import lab_down, lab_up, load_lab
from generators.readback.rendered import load_rendered

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NAME, BRIDGE = "ber1-diff", "sw-diff"
RESULTS = ROOT / "build" / "differential" / "results.json"


def refs(root: Path) -> set[tuple[str, str, str, str]]:
    return {(d.body["apiVersion"], d.kind, d.namespace, d.name) for d in load_rendered(root).docs
            if not d.file.startswith("apps/")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inv = tmp_path_factory.mktemp("diff") / "diff.yml"
    inv.write_text(f"include: {TOPOLOGY / 'lab.yml'}\nlab:\n  name: {NAME}\n  bridge: {BRIDGE}\n  fidelity: cilium\n")
    lab = load_lab(inv)
    try:
        lab_up(lab, log=lambda m: None)
        yield lab
    finally:
        lab_down(NAME, log=lambda m: None)


def test_twin_and_cilium_on_every_mutation(lab, tmp_path):
    base = {rel: text for rel, text in render_inventory(TOPOLOGY / "rack.yml").items() if rel != "MANIFEST.json"}
    applied: set[tuple[str, str, str, str]] = set()
    results = []
    for mutation in MUTATIONS:
        root = write(mutation.apply(dict(base)), tmp_path / mutation.name)
        wanted = refs(root)
        # every LoadBalancer Service is created anew, so that LB-IPAM decides on these files alone (an existing
        # allocation would otherwise carry over from the previous mutation, which the twin cannot know)
        fresh = {("v1", "Service", *key.split("/", 1)) for key in lb_service_keys(root)}
        stale = sorted((applied - wanted) | set(mutation.recreate) | fresh)
        if stale:
            with lab.kube(f"https://{lab.nodes['cat01']}:6443") as api:
                delete_documents(api, [tuple(r) for r in stale])
        try:
            lab_up(lab, log=lambda m: None, rendered_from=root)
        except LabToolError as exc:
            raise AssertionError(f"mutation {mutation.name} ({mutation.what}): lab-up failed: {exc}") from exc
        applied |= wanted
        twin = twin_observation(root, scoped=False)  # what the twin would decide, scope or not
        refused = twin_observation(root).get("refused")  # what it does: refuse files outside its scope
        with lab.kube(f"https://{lab.nodes['cat01']}:6443") as api:
            from kubernetes import client as k8s

            core = k8s.CoreV1Api(api)
            lb_ips = {}
            for key in lb_service_keys(root):
                ns, name = key.split("/")
                ingress = core.read_namespaced_service(name, ns).status.load_balancer.ingress or []
                lb_ips[key] = sorted(i.ip for i in ingress)
        cilium = cilium_observation(cilium_states(lab), lb_ips, {ip: n for n, ip in lab.nodes.items()})
        diffs = differences(twin, cilium)
        results.append({"mutation": mutation.name, "what": mutation.what, "agree": not diffs, "differences": diffs,
                        "refused": refused, "twin": twin, "cilium": cilium})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    agree, refused_count = sum(r["agree"] for r in results), sum(bool(r["refused"]) for r in results)
    print(f"\ndifferential corpus: {len(results)} mutations; the twin agrees with Cilium on {agree}, refuses "
          f"{refused_count} ({sum(bool(r['refused']) and r['agree'] for r in results)} of which it would have "
          f"got right); results in {RESULTS}")
    assert len(results) >= 20
    assert results[0]["agree"] and not results[0]["refused"], results[0]  # the seed itself: the twin decides it
    # the twin never answers differently from Cilium: where it would, it refuses the files instead
    wrong = [f"{r['mutation']}: {r['differences']}" for r in results if not r["agree"] and not r["refused"]]
    assert not wrong, "\n".join(wrong)
