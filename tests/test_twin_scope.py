"""The twin's scope: files it would not decide as Cilium does are refused (exit 2), with the reason and the way
out (the Cilium fidelity). Which features those are was measured by the differential corpus against
Cilium's own code (tests/test_differential_e2e.py, docs/DIFFERENTIAL.md); here, without Docker, every
mutation of the corpus is checked against the rules, so a rule that stops matching its case fails here.
"""
from __future__ import annotations

import pytest
from differential import MUTATIONS, write

from conftest import TOPOLOGY
from generators.errors import EXIT_BAD_INPUT
from generators.pipeline import render_inventory
from generators.twin import plan_twin
from generators.twin.scope import OutsideTwin

# The corpus mutations the twin refuses, and a word its reason must hold (the feature, not the mutation).
REFUSED = {
    "pin-unparseable": "is not an address",
    "unpinned-smallest-block": "3 blocks",
    "duplicate-clusterconfig": "selected by 2 CiliumBGPClusterConfigs",
    "aggregation": "aggregationLengthIPv4",
    "ccec-invalid-cluster": "fails Envoy's own validation",
    "ccec-nodeselector": "nodeSelector",
    "lb-class-l2": "loadBalancerClass 'io.cilium/l2-announcer'",
}


@pytest.fixture(scope="module")
def base():
    return {rel: text for rel, text in render_inventory(TOPOLOGY / "rack.yml").items() if rel != "MANIFEST.json"}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_every_corpus_mutation_is_decided_or_refused_as_measured(base, tmp_path, mutation):
    root = write(mutation.apply(dict(base)), tmp_path / mutation.name)
    if mutation.name not in REFUSED:
        plan_twin(root)  # decided: the corpus found the twin agrees with Cilium here
        return
    with pytest.raises(OutsideTwin) as err:
        plan_twin(root)
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "lab.fidelity: cilium" in str(err.value) and "docs/DIFFERENTIAL.md" in str(err.value)
    assert any(REFUSED[mutation.name] in reason for reason in err.value.details), err.value.details
    plan_twin(root, scoped=False)  # what it would have guessed stays computable, for the corpus's record


def test_the_seed_is_inside_the_twin(base, tmp_path):
    plan = plan_twin(write(base, tmp_path / "seed"))
    assert plan.expected_next_hops["10.31.0.80"] == {"10.31.0.218", "10.31.0.161", "10.31.0.132"}


def test_a_twin_lab_stops_on_refused_files_with_the_way_out(base, tmp_path):
    """lab-up on the twin fidelity reads the files through the same plan: exit 2, not a wrong lab."""
    from generators.errors import run_command

    refused = next(m for m in MUTATIONS if m.name == "aggregation")
    root = write(refused.apply(dict(base)), tmp_path / "agg")
    code = run_command(lambda: plan_twin(root) and 0)
    assert code == EXIT_BAD_INPUT
