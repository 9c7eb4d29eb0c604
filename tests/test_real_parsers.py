"""Every rendered config is accepted by the parser or schema of the project that consumes it.

- core Kubernetes documents: kubernetes-validate's strict schemas for the inventory's minor;
- cilium.io documents: the CRD ``openAPIV3Schema`` from the Cilium source at the inventory's version;
- HTTPRoute: the Gateway API CRD (standard channel) at the bundle version the Traefik chart ships;
- cilium/values.yaml: the Cilium chart's ``values.schema.json``;
- frr/frr.conf: the installed FRR (``vtysh --dryrun`` and ``bgpd -C``).

And each of them rejects a broken document. A schema source that cannot be reached makes the
tests fail with a message naming it (``SchemaSourceError``); nothing is skipped.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from generators import schemas as S
from generators.readback.rendered import Doc, Rendered, load_rendered

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "seed"
RACK = ROOT / "topology" / "rack.yml"

# The documents the design needs; the rendering must contain at least these.
EXPECTED_KINDS = {
    "CiliumLoadBalancerIPPool",
    "CiliumBGPClusterConfig",
    "CiliumBGPPeerConfig",
    "CiliumBGPAdvertisement",
    "Service",
    "EndpointSlice",
    "CiliumClusterwideEnvoyConfig",
    "HTTPRoute",
}


# --------------------------------------------------------------------------- fixtures


def _source_or_fail(load: Callable[[], Any]) -> Any:
    try:
        return load()
    except S.SchemaSourceError as exc:
        pytest.fail(f"schema source unreachable: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def versions() -> S.SchemaVersions:
    from generators.model import load_model

    model = load_model(RACK)
    return S.SchemaVersions(
        cilium=model.cilium_version, kubernetes=model.k3s_version, traefik_chart=model.traefik_chart_version
    )


@pytest.fixture(scope="module")
def rendered(rack_dir: Path) -> Rendered:
    return load_rendered(rack_dir)


@pytest.fixture(scope="module")
def cilium(versions: S.SchemaVersions) -> S.SchemaBundle:
    return _source_or_fail(lambda: S.cilium_schemas(versions.cilium))


@pytest.fixture(scope="module")
def gateway(versions: S.SchemaVersions) -> S.SchemaBundle:
    return _source_or_fail(lambda: S.gateway_api_schemas(versions.gateway_api))


@pytest.fixture(scope="module")
def k8s_choice(versions: S.SchemaVersions) -> S.K8sSchemaChoice:
    # choose_k8s_minor warns (SchemaVersionWarning, shown in pytest's summary) when it falls back
    return _source_or_fail(lambda: S.choose_k8s_minor(versions.kubernetes))


def _doc(rendered: Rendered, kind: str) -> Doc:
    docs = rendered.of_kind(kind)
    assert docs, f"the rendering has no {kind} document (files: {rendered.files})"
    return docs[0]


def _warn_cel(bundle: S.SchemaBundle, doc: dict) -> None:
    rules = S.unchecked_cel_rules(bundle, doc["apiVersion"], doc["kind"])
    if rules:
        why = "transition rules, update-only" if S.cel_available() else "no CEL evaluator: pip install cel-python"
        warnings.warn(
            f"{doc['kind']}: {len(rules)} x-kubernetes-validations (CEL) rule(s) of the CRD not evaluated "
            f"({why}), e.g. {rules[0].path}: {rules[0].message}",
            stacklevel=2,
        )


# --------------------------------------------------------------------------- the rendering is valid


def test_rendering_has_every_expected_document(rendered: Rendered) -> None:
    kinds = {d.kind for d in rendered.docs}
    assert EXPECTED_KINDS <= kinds, f"missing: {sorted(EXPECTED_KINDS - kinds)}"


def test_kubernetes_schemas_are_for_the_inventorys_minor(
    k8s_choice: S.K8sSchemaChoice, versions: S.SchemaVersions
) -> None:
    assert k8s_choice.requested == S.k8s_minor_of(versions.kubernetes)
    assert k8s_choice.exact, (
        f"kubernetes-validate {k8s_choice.package_version} has no Kubernetes {k8s_choice.requested} schemas; "
        f"documents were checked against {k8s_choice.used}"
    )


def test_every_rendered_document_validates(
    rendered: Rendered,
    versions: S.SchemaVersions,
    cilium: S.SchemaBundle,
    gateway: S.SchemaBundle,
    k8s_choice: S.K8sSchemaChoice,
) -> None:
    problems = {}
    for doc in rendered.docs:
        family = S.schema_family(doc.body)
        if family == "cilium":
            _warn_cel(cilium, doc.body)
        elif family == "gateway":
            _warn_cel(gateway, doc.body)
        errors = S.validate_document(doc.body, versions)
        if errors:
            problems[f"{doc.file}#{doc.index} {doc.ref}"] = errors
    assert not problems, "\n".join(f"{where}:\n  " + "\n  ".join(errs) for where, errs in problems.items())


def test_validate_rendered_reports_nothing_for_the_rack_and_names_a_broken_file(
    rendered: Rendered, versions: S.SchemaVersions, cilium: S.SchemaBundle, gateway: S.SchemaBundle
) -> None:
    assert S.validate_rendered(rendered, versions) == {}
    broken = copy.copy(rendered)
    broken.cilium_values = _set(rendered.cilium_values, "bgpControlPlane.enabled", "yes")
    broken.frr_conf = re.sub(r"(?m)^router bgp \d+$", "router bgp 99999999999", rendered.frr_conf)
    assert set(S.validate_rendered(broken, versions)) == {"cilium/values.yaml", "frr/frr.conf"}


@pytest.mark.parametrize("kind", sorted(EXPECTED_KINDS))
def test_document_validates_against_its_own_schema(
    kind: str,
    rendered: Rendered,
    versions: S.SchemaVersions,
    cilium: S.SchemaBundle,
    gateway: S.SchemaBundle,
    k8s_choice: S.K8sSchemaChoice,
) -> None:
    doc = _doc(rendered, kind).body
    family = S.schema_family(doc)
    if family == "cilium":
        assert doc["apiVersion"] == "cilium.io/v2"
        errors = S.validate_cilium_doc(doc, versions.cilium, k8s_minor=k8s_choice.requested)
    elif family == "gateway":
        assert doc["apiVersion"] == "gateway.networking.k8s.io/v1"
        errors = S.validate_gateway_doc(doc, versions.gateway_api, k8s_minor=k8s_choice.requested)
    else:
        assert family == "kubernetes"
        errors = S.validate_k8s_doc(doc, k8s_choice.requested)
    assert errors == []


def test_cilium_values_validate(rendered: Rendered, versions: S.SchemaVersions, cilium: S.SchemaBundle) -> None:
    assert rendered.cilium_values, "cilium/values.yaml is missing or empty"
    assert S.validate_cilium_values(rendered.cilium_values, versions.cilium) == []


def test_frr_conf_is_accepted_by_frr(rendered: Rendered) -> None:
    assert rendered.frr_conf.strip(), "frr/frr.conf is missing or empty"
    ok, output = _frr(rendered.frr_conf)
    assert ok, output


@pytest.mark.parametrize("name", ["cilium-bgp.yaml", "kube-apiserver-bgp.yaml", "httproute-foobar.yaml"])
def test_seed_reference_documents_validate(
    name: str, versions: S.SchemaVersions, cilium: S.SchemaBundle, gateway: S.SchemaBundle
) -> None:
    docs = [d for d in yaml.safe_load_all((SEED / name).read_text(encoding="utf-8")) if d]
    assert docs
    for doc in docs:
        assert S.validate_document(doc, versions) == [], f"{name}: {doc['kind']}"


# --------------------------------------------------------------------------- broken documents are rejected


def _set(doc: dict, path: str, value: Any) -> dict:
    """Copy of ``doc`` with ``path`` (``a.b[0].c``) set to ``value`` (or deleted when value is _DELETE)."""
    out = copy.deepcopy(doc)
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node = out
    for part in parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


_DELETE = object()

# (kind, path to change, new value, JSON path the error must name, text the error must contain)
BROKEN_DOCS = [
    # Cilium CRDs
    (
        "CiliumBGPClusterConfig",
        "spec.bgpInstances[0].peers[0].peerASN",
        "64512",
        "$.spec.bgpInstances[0].peers[0].peerASN",
        "not of type 'integer'",
    ),
    (
        "CiliumBGPClusterConfig",
        "spec.bgpInstances[0].peers[0].peerAsn",
        64512,
        "$.spec.bgpInstances[0].peers[0]",
        "'peerAsn' was unexpected",
    ),
    (
        "CiliumBGPClusterConfig",
        "spec.bgpInstances[0].localASN",
        2**33,
        "$.spec.bgpInstances[0].localASN",
        "greater than the maximum",
    ),
    (
        "CiliumBGPClusterConfig",
        "spec.bgpInstances[0].peers[0].peerAddress",
        None,
        "$.spec.bgpInstances[0].peers[0].peerAddress",
        "None is not of type",
    ),
    (
        "CiliumBGPPeerConfig",
        "spec.timers.holdTimeSeconds",
        2,
        "$.spec.timers.holdTimeSeconds",
        "less than the minimum of 3",
    ),
    (
        "CiliumBGPPeerConfig",
        "spec.gracefulRestart.restartTimeSeconds",
        4096,
        "$.spec.gracefulRestart.restartTimeSeconds",
        "greater than the maximum of 4095",
    ),
    (
        "CiliumBGPAdvertisement",
        "spec.advertisements[0].advertisementType",
        "Services",
        "$.spec.advertisements[0].advertisementType",
        "is not one of",
    ),
    (
        "CiliumBGPAdvertisement",
        "spec.advertisements[0].service.addresses[0]",
        "LoadBalancerIPs",
        "$.spec.advertisements[0].service.addresses[0]",
        "is not one of",
    ),
    ("CiliumLoadBalancerIPPool", "spec.blocks[0].cidr", "10.31.0.80/33", "$.spec.blocks[0].cidr", "is not a 'cidr'"),
    ("CiliumLoadBalancerIPPool", "metadata.label", {"a": "b"}, "$.metadata", "'label' was unexpected"),
    ("CiliumClusterwideEnvoyConfig", "spec.service", [], "$.spec", "'service' was unexpected"),
    ("CiliumClusterwideEnvoyConfig", "spec.services[0].name", 5, "$.spec.services[0].name", "not of type 'string'"),
    ("CiliumClusterwideEnvoyConfig", "metadata.namespace", "kube-system", "$.metadata.namespace", "cluster-scoped"),
    ("CiliumBGPPeerConfig", "kind", "CiliumBGPPeerConfigs", "$.kind", "no served CRD"),
    # core Kubernetes (kubernetes-validate, strict)
    ("Service", "spec.ports[0].port", "https", "$.spec.ports[0].port", "not of type 'integer'"),
    ("Service", "spec.externalTrafficPolicyy", "Cluster", "$.spec", "'externalTrafficPolicyy' was unexpected"),
    ("Service", "metadata.annotations.foo", 1, "$.metadata.annotations.foo", "not of type 'string'"),
    ("EndpointSlice", "endpoints[0].addresses", _DELETE, "$.endpoints[0]", "'addresses' is a required property"),
    (
        "EndpointSlice",
        "endpoints[0].conditions.ready",
        "yes",
        "$.endpoints[0].conditions.ready",
        "not of type 'boolean'",
    ),
    (
        "EndpointSlice",
        "apiVersion",
        "discovery.k8s.io/v1beta1",
        "$.kind",
        "has no EndpointSlice in discovery.k8s.io/v1beta1",
    ),
    # Gateway API
    (
        "HTTPRoute",
        "spec.rules[0].matches[0].path.type",
        "Prefix",
        "$.spec.rules[0].matches[0].path.type",
        "is not one of",
    ),
    (
        "HTTPRoute",
        "spec.rules[0].backendRefs[0].port",
        "3000",
        "$.spec.rules[0].backendRefs[0].port",
        "not of type 'integer'",
    ),
    ("HTTPRoute", "spec.hostname", "foobar.clustername.io", "$.spec", "'hostname' was unexpected"),
    (
        "HTTPRoute",
        "spec.rules[0].backendRefs[0].port",
        70000,
        "$.spec.rules[0].backendRefs[0].port",
        "greater than the maximum",
    ),
]


@pytest.mark.parametrize("kind,path,value,where,text", BROKEN_DOCS, ids=[f"{k}:{p}" for k, p, *_ in BROKEN_DOCS])
def test_broken_document_is_rejected(
    kind: str,
    path: str,
    value: Any,
    where: str,
    text: str,
    rendered: Rendered,
    versions: S.SchemaVersions,
    cilium: S.SchemaBundle,
    gateway: S.SchemaBundle,
    k8s_choice: S.K8sSchemaChoice,
) -> None:
    good = _doc(rendered, kind).body
    assert S.validate_document(good, versions) == []  # only the change makes it invalid
    errors = S.validate_document(_set(good, path, value), versions)
    assert any(e.startswith(where + ":") and text in e for e in errors), errors


# Rules the CRDs state in CEL (x-kubernetes-validations), evaluated on the defaulted object.
BROKEN_BY_CEL = [
    (
        "CiliumBGPPeerConfig",
        "spec.timers.keepAliveTimeSeconds",
        20,
        "$.spec.timers",
        "can not be larger than holdTimeSeconds",
    ),
    # keepalive left out: the CRD default (30) exceeds the hold time (15), which the apiserver rejects
    (
        "CiliumBGPPeerConfig",
        "spec.timers.keepAliveTimeSeconds",
        _DELETE,
        "$.spec.timers",
        "can not be larger than holdTimeSeconds",
    ),
    (
        "CiliumBGPAdvertisement",
        "spec.advertisements[0].service",
        _DELETE,
        "$.spec.advertisements[0]",
        "service field is required",
    ),
    (
        "HTTPRoute",
        "spec.rules[0].matches[0].path.value",
        "api",
        "$.spec.rules[0].matches[0].path",
        "must be an absolute path",
    ),
    ("HTTPRoute", "spec.parentRefs[1].sectionName", "websecure", "$.spec.parentRefs", "sectionName must be unique"),
]


@pytest.mark.parametrize(
    "kind,path,value,where,text",
    BROKEN_BY_CEL,
    ids=[f"{k}:{p}={v if v is not _DELETE else 'deleted'}" for k, p, v, *_ in BROKEN_BY_CEL],
)
def test_crd_cel_rule_rejects_broken_document(
    kind: str,
    path: str,
    value: Any,
    where: str,
    text: str,
    rendered: Rendered,
    versions: S.SchemaVersions,
    cilium: S.SchemaBundle,
    gateway: S.SchemaBundle,
) -> None:
    assert S.cel_available(), (
        "no CEL evaluator: install the cel-python package (a dev dependency) to check CRD CEL rules"
    )
    good = _doc(rendered, kind).body
    assert S.validate_document(good, versions) == []
    errors = S.validate_document(_set(good, path, value), versions)
    assert any(e.startswith(where + ":") and text in e for e in errors), errors


def test_cel_sees_escaped_field_names(rendered: Rendered, versions: S.SchemaVersions, gateway: S.SchemaBundle) -> None:
    """Two parents that differ only by ``namespace`` (``__namespace__`` in CEL) may share a sectionName."""
    assert S.cel_available(), "no CEL evaluator: install the cel-python package (a dev dependency)"
    doc = _doc(rendered, "HTTPRoute").body
    other = _set(
        _set(doc, "spec.parentRefs[1].namespace", "other"),
        "spec.parentRefs[1].sectionName",
        doc["spec"]["parentRefs"][0]["sectionName"],
    )
    assert S.validate_document(other, versions) == []
    assert (
        S.validate_document(
            _set(other, "spec.parentRefs[1].namespace", doc["spec"]["parentRefs"][0]["namespace"]), versions
        )
        != []
    )


def test_ccec_envoy_resources_keep_unknown_fields(
    rendered: Rendered, versions: S.SchemaVersions, cilium: S.SchemaBundle
) -> None:
    """``resources[]`` items are x-kubernetes-preserve-unknown-fields: Envoy fields are not the CRD's to check."""
    doc = _doc(rendered, "CiliumClusterwideEnvoyConfig").body
    changed = _set(doc, "spec.resources[0].per_connection_buffer_limit_bytes", 32768)
    assert S.validate_cilium_doc(changed, versions.cilium) == []


BROKEN_VALUES = [
    ("bgpControlPlane.enabled", "yes", "$.bgpControlPlane.enabled", "not of type 'boolean'"),
    ("bgpControlPlane.enable", True, "$.bgpControlPlane", "'enable' was unexpected"),
    ("operator.replicas", "1", "$.operator.replicas", "not of type 'integer'"),
    ("identityManagementMode", "agents", "$.identityManagementMode", "is not one of"),
    ("k8sServicePort", 6443.5, "$.k8sServicePort", "is not of type"),
]


@pytest.mark.parametrize("path,value,where,text", BROKEN_VALUES, ids=[p for p, *_ in BROKEN_VALUES])
def test_broken_cilium_values_are_rejected(
    path: str, value: Any, where: str, text: str, rendered: Rendered, versions: S.SchemaVersions, cilium: S.SchemaBundle
) -> None:
    errors = S.validate_cilium_values(_set(rendered.cilium_values, path, value), versions.cilium)
    assert any(e.startswith(where + ":") and text in e for e in errors), errors


def test_unknown_values_key_passes_the_published_schema_and_fails_ours(
    rendered: Rendered, versions: S.SchemaVersions, cilium: S.SchemaBundle
) -> None:
    """Helm accepts unknown keys (the chart's schema has no additionalProperties); strict mode does not."""
    typo = _set(rendered.cilium_values, "kubeProxyReplacment", True)
    assert S.validate_cilium_values(typo, versions.cilium, strict=False) == []
    assert S.validate_cilium_values(typo, versions.cilium) != []


# FRR: (regex to replace in the rendered frr.conf, replacement, which check must reject it, text in its output)
BROKEN_FRR = [
    (
        r"(?m)^ neighbor (\S+) remote-as \d+$",
        r" neighbor \1 remote-as banana",
        "vtysh --dryrun rejected",
        "Unknown command",
    ),
    (r"(?m)^router bgp \d+$", "router bgp 99999999999", "vtysh --dryrun rejected", "Unknown command"),
    (r"(?m)^ bgp router-id \S+$", " bgp router-id 10.31.0.999", "vtysh --dryrun rejected", "Unknown command"),
    (
        r"(?m)^ no bgp ebgp-requires-policy$",
        " no bgp ebgp-requires-policy\n frobnicate",
        "vtysh --dryrun rejected",
        "Unknown command",
    ),
    # syntax is fine, semantics are not: only bgpd -C notices
    (
        r"(?m)^ no bgp default ipv4-unicast$",
        " no bgp default ipv4-unicast\n neighbor foo peer-group bar",
        "bgpd -C rejected",
        "Malformed address or name: foo",
    ),
    (r"(?m)^ neighbor (\S+) peer-group$", r" neighbor \1-typo peer-group", "bgpd -C rejected", "peer-group"),
    (r"(?m)^  neighbor (\S+) activate$", r"  neighbor \1-typo activate", "bgpd -C rejected", "Config Failed"),
]


def _frr(text: str) -> S.FrrResult:
    return _source_or_fail(lambda: S.frr_dryrun(text))


@pytest.mark.parametrize("pattern,replacement,stage,text", BROKEN_FRR, ids=[r for _, r, *_ in BROKEN_FRR])
def test_broken_frr_conf_is_rejected(pattern: str, replacement: str, stage: str, text: str, rendered: Rendered) -> None:
    broken, count = re.subn(pattern, replacement, rendered.frr_conf, count=1)
    assert count == 1, f"pattern {pattern!r} not found in the rendered frr.conf:\n{rendered.frr_conf}"
    ok, output = _frr(broken)
    assert not ok, f"FRR accepted:\n{broken}"
    assert stage in output and text in output, output


# --------------------------------------------------------------------------- sources and versions


def test_missing_go_and_cache_fails_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(S.SchemaSourceError, match=r"github\.com/cilium/cilium@v1\.19\.3.*Go toolchain"):
        S.fetch_bundle(S.CILIUM, "1.19.3", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "cilium-1.19.3").exists()


def test_refused_module_download_fails_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPROXY", "off")  # what a proxy that refuses looks like to us, without the network
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "empty-modcache"))  # a machine that has not downloaded it
    monkeypatch.setenv("GOFLAGS", "-modcacherw")
    with pytest.raises(S.SchemaSourceError, match=r"github\.com/cilium/cilium@v1\.19\.3"):
        S.fetch_bundle(S.CILIUM, "1.19.3", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "cilium-1.19.3").exists()


def test_cached_schemas_need_neither_go_nor_network(
    cilium: S.SchemaBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    monkeypatch.setenv("GOPROXY", "off")
    directory = S.fetch_bundle(S.CILIUM, cilium.version, cache_dir=cilium.directory.parent)
    assert directory == cilium.directory
    assert (directory / "files" / S.CILIUM_VALUES_SCHEMA).is_file()
    assert (directory / "crds" / "cilium.io" / "v2" / "CiliumBGPPeerConfig.json").is_file()


def test_kubernetes_minor_fallback_is_loud() -> None:
    newest = S.k8s_supported_minors()[-1]
    major, minor = newest.split(".")
    with pytest.warns(S.SchemaVersionWarning, match=f"validating against {re.escape(newest)}"):
        choice = S.choose_k8s_minor(f"v{major}.{int(minor) + 5}.0+k3s1")
    assert choice.used == newest and not choice.exact
    with pytest.raises(S.SchemaSourceError, match="no schemas for Kubernetes 1.2 or older"):
        S.choose_k8s_minor("1.2")
