"""Schemas of the tools that consume our rendered files, and validation against them.

Nothing here is our own idea of what a valid document is: every check uses a schema or a parser
published by the consuming project.

- Cilium CRDs (``openAPIV3Schema`` of every CRD version) and the Helm chart's
  ``values.schema.json``, taken from the ``github.com/cilium/cilium`` Go module at the
  inventory's Cilium version.
- Gateway API CRDs (standard channel) from the ``sigs.k8s.io/gateway-api`` Go module, at the
  bundle version the Traefik chart ships.
  Their CEL rules (``x-kubernetes-validations``) are evaluated with the ``cel-python`` package
  when it is installed, on the object defaulted from the schema, as the apiserver does.
- Kubernetes core types: the ``kubernetes-validate`` package (strict schemas).
- FRR: the real ``vtysh --dryrun`` and ``bgpd -C`` of the installed ``frr`` package.

Go modules are fetched with the Go toolchain (``go mod download``), i.e. through whatever
module proxy ``go env GOPROXY`` names; the files we need are extracted and cached under
``~/.cache/k3s-bgp-lab/schemas/<source>-<version>/`` so later runs need neither Go nor network.
A source that cannot be reached raises :class:`SchemaSourceError`, never a silent skip.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import jsonschema
import yaml

from generators.errors import EnvironmentProblem
from generators.gomod import GoModuleError, cache_dir, download

FRR_TIMEOUT_S = 60


class SchemaSourceError(EnvironmentProblem):
    """A schema source (or checking tool) cannot be reached; the message says which and what to do."""


class SchemaVersionWarning(UserWarning):
    """The schemas used are for another version than the one requested."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ModuleSource:
    """A Go module that carries CRDs (and maybe other schema files) we validate against."""

    name: str  # cache directory prefix, e.g. "cilium"
    module: str  # Go module path
    crd_dirs: tuple[str, ...]  # directories inside the module whose *.yaml files are CRDs
    extra_files: tuple[str, ...] = ()  # other files to keep, relative to the module root


CILIUM = ModuleSource(
    name="cilium",
    module="github.com/cilium/cilium",
    crd_dirs=("pkg/k8s/apis/cilium.io/client/crds/v2",),
    extra_files=("install/kubernetes/cilium/values.schema.json",),
)
CILIUM_VALUES_SCHEMA = "install/kubernetes/cilium/values.schema.json"

GATEWAY_API = ModuleSource(
    name="gateway-api",
    module="sigs.k8s.io/gateway-api",
    crd_dirs=("config/crd/standard",),
)

# Gateway API bundle shipped by a Traefik chart release: read from the
# `gateway.networking.k8s.io/bundle-version` annotation of traefik/crds/gateway-standard-install.yaml
# in the chart's source at that tag. Add a row when the inventory moves to another chart.
TRAEFIK_CHART_GATEWAY_API = {
    "39.0.7": "1.4.0",
}


def gateway_api_version_for_traefik(chart_version: str) -> str:
    try:
        return TRAEFIK_CHART_GATEWAY_API[chart_version.lstrip("v")]
    except KeyError:
        raise SchemaSourceError(
            f"Gateway API: no known Gateway API bundle version for Traefik chart {chart_version}; look up the "
            "`gateway.networking.k8s.io/bundle-version` annotation in the chart's traefik/crds/ at that tag "
            "and add it to TRAEFIK_CHART_GATEWAY_API in generators/schemas.py"
        ) from None


def default_cache_dir() -> Path:
    return cache_dir() / "schemas"


def _plain_version(version: str) -> str:
    return version[1:] if version.startswith("v") else version


# --------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class CrdVersion:
    """One served version of one CRD."""

    group: str
    version: str
    kind: str
    scope: str
    schema: dict  # the raw openAPIV3Schema

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@dataclass
class SchemaBundle:
    """What the cache holds for one source at one version."""

    source: ModuleSource
    version: str  # without the leading "v"
    directory: Path
    crds: dict[tuple[str, str], CrdVersion] = field(default_factory=dict)  # (apiVersion, kind) ->
    files: dict[str, Any] = field(default_factory=dict)  # extra file path -> parsed JSON
    origin: dict = field(default_factory=dict)  # what `go mod download -json` said
    validators: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)  # built lazily

    def crd(self, api_version: str, kind: str) -> CrdVersion | None:
        return self.crds.get((api_version, kind))


def _crd_versions(crd: dict) -> Iterator[CrdVersion]:
    spec = crd.get("spec") or {}
    if crd.get("kind") != "CustomResourceDefinition" or not spec.get("versions"):
        return
    for ver in spec["versions"]:
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        if not ver.get("served", False) or not isinstance(schema, dict):
            continue
        yield CrdVersion(spec["group"], ver["name"], spec["names"]["kind"], spec.get("scope", ""), schema)


def _extract(source: ModuleSource, version: str, zip_path: Path, out: Path) -> list[str]:
    """Write every served CRD version and the extra files of ``source`` from the module zip into ``out``."""
    prefix = f"{source.module}@v{version}/"
    written: list[str] = []
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        for crd_dir in source.crd_dirs:
            members = sorted(
                n
                for n in names
                if n.startswith(prefix + crd_dir + "/")
                and n.endswith(".yaml")
                and "/" not in n[len(prefix + crd_dir) + 1 :]
            )
            if not members:
                raise SchemaSourceError(f"{source.module}@v{version}: no CRD files under {crd_dir}/ in the module")
            for member in members:
                for doc in yaml.safe_load_all(zf.read(member)):
                    for cv in _crd_versions(doc or {}):
                        rel = f"crds/{cv.group}/{cv.version}/{cv.kind}.json"
                        payload = {
                            "group": cv.group,
                            "version": cv.version,
                            "kind": cv.kind,
                            "scope": cv.scope,
                            "from": member[len(prefix) :],
                            "openAPIV3Schema": cv.schema,
                        }
                        _write_json(out / rel, payload)
                        written.append(rel)
        for extra in source.extra_files:
            member = prefix + extra
            if member not in names:
                raise SchemaSourceError(f"{source.module}@v{version}: {extra} is not in the module")
            data = json.loads(zf.read(member))
            _write_json(out / "files" / extra, data)
            written.append(f"files/{extra}")
    return written


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def fetch_bundle(source: ModuleSource, version: str, cache_dir: Path | None = None) -> Path:
    """Make sure ``<cache>/<name>-<version>/`` exists and is complete; download it when it is not.

    The directory is built next to its final place and renamed into place only when complete, so
    an interrupted run leaves no half cache behind (``SOURCE.json`` is written last, inside).
    """
    version = _plain_version(version)
    cache = cache_dir or default_cache_dir()
    final = cache / f"{source.name}-{version}"
    if (final / "SOURCE.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".go-", dir=cache) as work:
        workdir = Path(work)
        try:
            info = download(source.module, version, why=f"schemas, not yet cached in {final}")
        except GoModuleError as exc:
            raise SchemaSourceError(f"{exc}; or copy {cache} from a machine that has it") from exc
        staging = workdir / "staging"
        staging.mkdir()
        files = _extract(source, version, Path(info["Zip"]), staging)
        origin = {k: info.get(k) for k in ("Path", "Version", "Sum", "GoModSum", "Origin")}
        zip_size = Path(info["Zip"]).stat().st_size
        _write_json(
            staging / "SOURCE.json",
            {
                "module": source.module,
                "version": version,
                "go": origin,
                "zip_bytes": zip_size,
                "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "files": files,
            },
        )
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / "SOURCE.json").is_file():  # not a concurrent run that won the race
                raise
    return final


@lru_cache(maxsize=None)
def _load_bundle_cached(source: ModuleSource, version: str, cache: Path) -> SchemaBundle:
    directory = fetch_bundle(source, version, cache)
    meta = json.loads((directory / "SOURCE.json").read_text(encoding="utf-8"))
    bundle = SchemaBundle(source=source, version=version, directory=directory, origin=meta.get("go") or {})
    for rel in meta["files"]:
        data = json.loads((directory / rel).read_text(encoding="utf-8"))
        if rel.startswith("crds/"):
            cv = CrdVersion(data["group"], data["version"], data["kind"], data["scope"], data["openAPIV3Schema"])
            bundle.crds[(cv.api_version, cv.kind)] = cv
        else:
            bundle.files[rel[len("files/") :]] = data
    return bundle


def load_bundle(source: ModuleSource, version: str, cache_dir: Path | None = None) -> SchemaBundle:
    return _load_bundle_cached(source, _plain_version(version), Path(cache_dir or default_cache_dir()))


def cilium_schemas(version: str, cache_dir: Path | None = None) -> SchemaBundle:
    return load_bundle(CILIUM, version, cache_dir)


def gateway_api_schemas(version: str, cache_dir: Path | None = None) -> SchemaBundle:
    return load_bundle(GATEWAY_API, version, cache_dir)


# --------------------------------------------------------------------------- structural schema -> JSON Schema

# Formats the apiserver checks; "date-time" and "hostname" only when jsonschema's optional
# helpers (rfc3339-validator, fqdn) are installed. Formats the apiserver ignores are ignored here.
_KUBE_FORMATS = ("ipv4", "ipv6", "date-time", "hostname", "uuid")
_FORMAT_CHECKER = jsonschema.FormatChecker(formats=[f for f in _KUBE_FORMATS if f in jsonschema.FormatChecker.checkers])


@_FORMAT_CHECKER.checks("cidr", raises=ValueError)
def _is_cidr(value: object) -> bool:
    # the apiserver's "cidr" format is Go's net.ParseCIDR: host bits may be set
    if isinstance(value, str):
        ipaddress.ip_network(value, strict=False)
    return True


def _int_range(bits: int):
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

    return check


# Integer formats are range-checked by the apiserver's OpenAPI validator as well.
_FORMAT_CHECKER.checks("int32")(_int_range(32))
_FORMAT_CHECKER.checks("int64")(_int_range(64))


@dataclass(frozen=True)
class CelRule:
    """An ``x-kubernetes-validations`` rule (CEL), where it sits in the schema."""

    path: str
    rule: str
    message: str


def structural_to_jsonschema(
    node: Any, *, in_junctor: bool = False, path: str = "$", cel: list[CelRule] | None = None
) -> Any:
    """Turn a CRD's structural ``openAPIV3Schema`` into a JSON Schema (draft 4 keywords).

    - ``nullable: true`` adds ``null`` to the type; without it a ``null`` value is an error
      (the apiserver would prune it; for us a null is a template that rendered nothing).
    - ``x-kubernetes-int-or-string`` allows an integer or a string.
    - Unknown fields: Kubernetes silently *prunes* fields a structural schema does not declare,
      so a typo in a field name is lost without a word. For us an unknown field is a mistake, so
      every object that declares ``properties`` gets ``additionalProperties: false`` -- unless it
      carries ``x-kubernetes-preserve-unknown-fields`` (e.g. the CCEC's ``resources[]``, which are
      Envoy protos checked by Cilium's protojson, not by the CRD) or declares its own
      ``additionalProperties``. Branches of ``allOf``/``anyOf``/``oneOf``/``not`` only constrain
      values and are left open.
    - A property with a ``default`` is not required (the apiserver defaults before it validates).
    - ``x-kubernetes-validations`` (CEL) are not JSON Schema; they are collected in ``cel`` and
      evaluated by :func:`cel_errors` on the defaulted object.
    """
    if isinstance(node, list):
        return [structural_to_jsonschema(n, in_junctor=in_junctor, path=path, cel=cel) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "example", "externalDocs"):
            continue
        if key == "properties":
            out[key] = {
                name: structural_to_jsonschema(sub, in_junctor=in_junctor, path=f"{path}.{name}", cel=cel)
                for name, sub in value.items()
            }
        elif key == "items":
            out[key] = structural_to_jsonschema(value, in_junctor=in_junctor, path=f"{path}[*]", cel=cel)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = structural_to_jsonschema(value, in_junctor=in_junctor, path=f"{path}.*", cel=cel)
        elif key in ("allOf", "anyOf", "oneOf", "not"):
            out[key] = structural_to_jsonschema(value, in_junctor=True, path=path, cel=cel)
        else:
            out[key] = value
    if cel is not None:
        for rule in node.get("x-kubernetes-validations") or []:
            cel.append(CelRule(path, str(rule.get("rule", "")), str(rule.get("message", ""))))
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node and "oneOf" not in node:
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-embedded-resource") and "properties" in out:
        for meta_key in ("apiVersion", "kind"):
            out["properties"].setdefault(meta_key, {"type": "string"})
        out["properties"].setdefault("metadata", {"type": "object"})
    if "required" in out and "properties" in out:
        out["required"] = [r for r in out["required"] if "default" not in (node["properties"].get(r) or {})]
        if not out["required"]:
            del out["required"]
    if (
        not in_junctor
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _json_path(parts: Iterable[Any]) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            text += f".{part}"
        else:
            text += f"[{json.dumps(str(part))}]"
    return text


def _errors(validator: Any, instance: Any, prefix: Iterable[Any] = ()) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        out.append(f"{_json_path([*prefix, *err.absolute_path])}: {_short(err)}")
    return out


def _short(err: jsonschema.ValidationError) -> str:
    msg = err.message
    if len(msg) > 300:
        msg = msg[:300] + "..."
    if err.validator in ("anyOf", "oneOf") and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        msg += f" (closest: {best.message[:200]})"
    return msg


@dataclass(frozen=True)
class CrdValidator:
    crd: CrdVersion
    validator: Any
    cel_rules: tuple[CelRule, ...]


def _build_crd_validator(crd: CrdVersion) -> CrdValidator:
    cel: list[CelRule] = []
    schema = structural_to_jsonschema(crd.schema, cel=cel)
    # metadata is validated separately against Kubernetes' ObjectMeta (see validate_crd_doc)
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    jsonschema.Draft4Validator.check_schema(schema)
    return CrdValidator(crd, jsonschema.Draft4Validator(schema, format_checker=_FORMAT_CHECKER), tuple(cel))


def crd_validator(bundle: SchemaBundle, api_version: str, kind: str) -> CrdValidator | None:
    key = (api_version, kind)
    if key not in bundle.validators:
        crd = bundle.crd(api_version, kind)
        if crd is None:
            return None
        bundle.validators[key] = _build_crd_validator(crd)
    return bundle.validators[key]


def validate_crd_doc(doc: Mapping, bundle: SchemaBundle, k8s_minor: str | None = None) -> list[str]:
    """Errors of one custom resource against the CRD schema in ``bundle`` (empty list: valid)."""
    if not isinstance(doc, Mapping):
        return [f"$: expected a mapping, got {type(doc).__name__}"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    where = f"{bundle.source.module}@v{bundle.version}"
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["$: apiVersion and kind must both be strings"]
    checker = crd_validator(bundle, api_version, kind)
    if checker is None:
        known = sorted({k for (av, k) in bundle.crds if av == api_version})
        return [
            f"$.kind: no served CRD for {kind} in {api_version} at {where} "
            f"(known kinds there: {', '.join(known) or 'none'})"
        ]
    errors = _errors(checker.validator, dict(doc))
    errors += validate_object_meta(doc.get("metadata"), k8s_minor, namespaced=checker.crd.scope == "Namespaced")
    if not errors and cel_available():
        # like the apiserver: CEL rules run on a schema-valid, defaulted object
        errors = cel_errors(checker.crd.schema, apply_defaults(checker.crd.schema, dict(doc)))
    return errors


def unchecked_cel_rules(bundle: SchemaBundle, api_version: str, kind: str) -> tuple[CelRule, ...]:
    """The CEL rules of that CRD version that :func:`validate_crd_doc` cannot evaluate here.

    All of them when no CEL evaluator (the ``cel-python`` package) is installed; otherwise the
    transition rules (those using ``oldSelf``, which only apply to updates).
    """
    checker = crd_validator(bundle, api_version, kind)
    if checker is None:
        return ()
    if not cel_available():
        return checker.cel_rules
    return tuple(r for r in checker.cel_rules if _is_transition_rule(r.rule))


# --------------------------------------------------------------------------- CEL (x-kubernetes-validations)


def cel_available() -> bool:
    try:
        import celpy  # noqa: F401  (the cel-python package)
    except ImportError:
        return False
    return True


def apply_defaults(schema: Mapping, value: Any) -> Any:
    """A copy of ``value`` with the structural schema's ``default``s filled in, as the apiserver does
    before it validates (a missing property with a default gets it; defaults are defaulted too)."""
    if isinstance(value, Mapping):
        out = dict(value)
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name in out:
                if name not in props:
                    out[name] = apply_defaults(extra, out[name])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


# Kubernetes exposes object fields to CEL under escaped names: reserved words become __word__,
# and "__", ".", "-", "/" inside a name become __underscores__, __dot__, __dash__, __slash__.
_CEL_RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package "
    "namespace return var void while".split()
)
_CEL_ESCAPES = (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"), ("/", "__slash__"))


def cel_escape(name: str) -> str:
    if name in _CEL_RESERVED:
        return f"__{name}__"
    for raw, escaped in _CEL_ESCAPES:
        name = name.replace(raw, escaped)
    return name


def _cel_view(schema: Mapping, value: Any) -> Any:
    """``value`` as a CEL rule sees it: declared object fields under their escaped names."""
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for name, sub in value.items():
            if name in props:
                out[cel_escape(name)] = _cel_view(props[name], sub)
            else:  # map entries (additionalProperties) keep their keys: rules index them as self['key']
                out[name] = _cel_view(extra if isinstance(extra, Mapping) else {}, sub)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [_cel_view(items if isinstance(items, Mapping) else {}, v) for v in value]
    return value


def _is_transition_rule(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


@lru_cache(maxsize=None)
def _cel_program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_holds(rule: str, value: Any, schema: Mapping) -> tuple[bool, str]:
    import celpy
    from celpy import celtypes

    try:
        result = _cel_program(rule).evaluate({"self": celpy.json_to_cel(_cel_view(schema, value))})
    except Exception as exc:  # a rule that errors at run time fails, as in the apiserver
        return False, f"rule error ({type(exc).__name__}: {exc})"
    if isinstance(result, celtypes.BoolType):
        return bool(result), ""
    return False, f"rule error ({result})"


def cel_errors(schema: Mapping, value: Any, parts: tuple = ()) -> list[str]:
    """Evaluate every ``x-kubernetes-validations`` rule on the part of ``value`` it is attached to.

    Transition rules (``oldSelf``) are skipped: they only apply to updates, and ours are creates.
    """
    errors: list[str] = []
    for item in schema.get("x-kubernetes-validations") or []:
        rule = str(item.get("rule", ""))
        if _is_transition_rule(rule):
            continue
        holds, why = _cel_holds(rule, value, schema)
        if not holds:
            message = item.get("message") or f"failed rule: {rule}"
            errors.append(f"{_json_path(parts)}: {message}" + (f" [{why}]" if why else ""))
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, sub in value.items():
            child = props.get(name) if name in props else (extra if isinstance(extra, Mapping) else None)
            if child is not None:
                errors += cel_errors(child, sub, (*parts, name))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, sub in enumerate(value):
            errors += cel_errors(schema["items"], sub, (*parts, index))
    return errors


# --------------------------------------------------------------------------- Kubernetes core (kubernetes-validate)


@dataclass(frozen=True)
class K8sSchemaChoice:
    requested: str  # "1.35"
    used: str  # the minor whose schemas are used
    package_version: str  # kubernetes-validate release

    @property
    def exact(self) -> bool:
        return self.requested == self.used


def k8s_minor_of(version: str) -> str:
    """``v1.35.1+k3s1`` -> ``1.35``."""
    m = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not m:
        raise ValueError(f"{version!r} is not a Kubernetes version (expected e.g. v1.35.1+k3s1 or 1.35)")
    return f"{int(m.group(1))}.{int(m.group(2))}"


def _minor_key(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest.split(".")[0])


def k8s_supported_minors() -> list[str]:
    from kubernetes_validate import utils as kv_utils

    return sorted({k8s_minor_of(v) for v in kv_utils.all_versions()}, key=_minor_key)


@lru_cache(maxsize=None)
def choose_k8s_minor(requested: str) -> K8sSchemaChoice:
    """The newest minor ``kubernetes-validate`` has that is not newer than ``requested``.

    When that is not ``requested`` itself a :class:`SchemaVersionWarning` is issued: validating
    against an older minor is still useful (core types rarely lose fields) but it is not the same
    claim, and the test output must say so.
    """
    from kubernetes_validate.version import __version__ as kv_version

    want = k8s_minor_of(requested)
    supported = k8s_supported_minors()
    older = [m for m in supported if _minor_key(m) <= _minor_key(want)]
    if not older:
        raise SchemaSourceError(
            f"kubernetes-validate {kv_version} has no schemas for Kubernetes {want} or older "
            f"(it has {supported[0]}..{supported[-1]}); install a release that does"
        )
    choice = K8sSchemaChoice(want, older[-1], kv_version)
    if not choice.exact:
        warnings.warn(
            SchemaVersionWarning(
                f"kubernetes-validate {kv_version} has no schemas for Kubernetes {want}; validating against "
                f"{choice.used}, the newest it has. Upgrade kubernetes-validate for an exact check."
            ),
            stacklevel=2,
        )
    return choice


_K8S_DEFS_URI = "/api/_definitions.json"  # how kubernetes-validate's schema files refer to their definitions


@lru_cache(maxsize=None)
def _k8s_registry(minor: str) -> Any:
    from kubernetes_validate import utils as kv_utils
    from referencing import Registry, Resource

    defs = kv_utils.schema_contents(f"kubernetes-json-schema/v{minor}.0-local-strict/_definitions.json", minor)
    return Registry().with_resource(_K8S_DEFS_URI, Resource.from_contents(defs))


@lru_cache(maxsize=None)
def _k8s_validator(minor: str, kind: str, api_version: str) -> Any:
    from kubernetes_validate import utils as kv_utils

    # the same file naming as kubernetes_validate.validate(): "discovery.k8s.io/v1" -> "discovery-v1"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(
            f"kubernetes-json-schema/v{minor}.0-local-strict/{kind.lower()}-{api}.json", minor
        )
    except FileNotFoundError:
        return None
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry(minor))


def validate_k8s_doc(doc: Mapping, k8s_minor: str) -> list[str]:
    """Errors of a core Kubernetes document against kubernetes-validate's *strict* schemas.

    Strict: unknown fields are errors. Note that these schemas (OpenAPI from the apiserver)
    carry no enums for fields such as ``Service.spec.type``; the apiserver checks those in Go.
    """
    if not isinstance(doc, Mapping):
        return [f"$: expected a mapping, got {type(doc).__name__}"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["$: apiVersion and kind must both be strings"]
    choice = choose_k8s_minor(k8s_minor)
    validator = _k8s_validator(choice.used, kind, api_version)
    if validator is None:
        return [
            f"$.kind: Kubernetes {choice.used} has no {kind} in {api_version} "
            f"(kubernetes-validate {choice.package_version})"
        ]
    return _errors(validator, dict(doc))


def validate_object_meta(meta: Any, k8s_minor: str | None = None, *, namespaced: bool | None = None) -> list[str]:
    """``metadata`` of any object against Kubernetes' ObjectMeta (strict), plus name/namespace presence."""
    minor = choose_k8s_minor(k8s_minor).used if k8s_minor else k8s_supported_minors()[-1]
    if not isinstance(meta, Mapping):
        return ["$.metadata: missing or not a mapping"]
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{_K8S_DEFS_URI}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        registry=_k8s_registry(minor),
    )
    errors = _errors(validator, dict(meta), ["metadata"])
    if not meta.get("name") and not meta.get("generateName"):
        errors.append("$.metadata.name: required")
    if namespaced is False and meta.get("namespace"):
        errors.append("$.metadata.namespace: set on a cluster-scoped resource")
    return errors


# --------------------------------------------------------------------------- Cilium / Gateway API / Helm values


def validate_cilium_doc(
    doc: Mapping, version: str, *, k8s_minor: str | None = None, cache_dir: Path | None = None
) -> list[str]:
    """Errors of a cilium.io document against the CRD schema of Cilium ``version`` (e.g. "1.19.3")."""
    return validate_crd_doc(doc, cilium_schemas(version, cache_dir), k8s_minor)


def validate_gateway_doc(
    doc: Mapping, gateway_api_version: str, *, k8s_minor: str | None = None, cache_dir: Path | None = None
) -> list[str]:
    """Errors of a gateway.networking.k8s.io document against the standard-channel CRDs."""
    return validate_crd_doc(doc, gateway_api_schemas(gateway_api_version, cache_dir), k8s_minor)


def strict_values_schema(node: Any, *, in_junctor: bool = False) -> Any:
    """A Helm values schema where objects that list ``properties`` reject other keys.

    Helm itself accepts any extra key; a misspelt key is then silently unused by the chart. We
    treat it as an error. Maps the chart declares only by their default keys (e.g.
    ``nodeSelector``) would also reject extra keys -- the error message says so.
    """
    if isinstance(node, list):
        return [strict_values_schema(n, in_junctor=in_junctor) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {k: strict_values_schema(v, in_junctor=in_junctor) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = strict_values_schema(value, in_junctor=in_junctor)
        elif key in ("allOf", "anyOf", "oneOf", "not"):
            out[key] = strict_values_schema(value, in_junctor=True)
        else:
            out[key] = value
    if (
        not in_junctor
        and "properties" in node
        and "additionalProperties" not in node
        and "patternProperties" not in node
    ):
        out["additionalProperties"] = False
    return out


def _values_validator(bundle: SchemaBundle, strict: bool) -> Any:
    key = (CILIUM_VALUES_SCHEMA, "strict" if strict else "as-published")
    if key not in bundle.validators:
        bundle.validators[key] = _build_values_validator(bundle.files[CILIUM_VALUES_SCHEMA], strict)
    return bundle.validators[key]


def _build_values_validator(schema: dict, strict: bool) -> Any:
    if strict:
        schema = strict_values_schema(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def validate_cilium_values(
    values: Mapping, version: str, *, strict: bool = True, cache_dir: Path | None = None
) -> list[str]:
    """Errors of Cilium Helm values against the chart's ``values.schema.json`` at ``version``.

    ``strict`` (default) also rejects keys the schema does not list (see :func:`strict_values_schema`).
    """
    validator = _values_validator(cilium_schemas(version, cache_dir), strict)
    errors = _errors(validator, dict(values) if isinstance(values, Mapping) else values)
    if strict:
        errors = [
            e + " (unknown to the chart's values.schema.json; Helm itself would accept it)"
            if "Additional properties are not allowed" in e
            else e
            for e in errors
        ]
    return errors


# --------------------------------------------------------------------------- dispatch for a whole rendering


@dataclass(frozen=True)
class SchemaVersions:
    """Which schemas a rendering is checked against (all from the inventory)."""

    cilium: str  # "1.19.3"
    kubernetes: str  # "1.35" or "v1.35.1+k3s1"
    traefik_chart: str  # "39.0.7"

    @property
    def gateway_api(self) -> str:
        return gateway_api_version_for_traefik(self.traefik_chart)


def schema_family(doc: Mapping) -> str:
    """``cilium``, ``gateway``, ``kubernetes`` or ``unknown`` from a document's apiVersion."""
    api_version = str(doc.get("apiVersion", ""))
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group == "cilium.io":
        return "cilium"
    if group == "gateway.networking.k8s.io":
        return "gateway"
    if group == "" or group.endswith(".k8s.io") or "." not in group:
        return "kubernetes"
    return "unknown"


def validate_document(doc: Mapping, versions: SchemaVersions, cache_dir: Path | None = None) -> list[str]:
    """Errors of any Kubernetes document we render, against the right published schema."""
    family = schema_family(doc)
    minor = k8s_minor_of(versions.kubernetes)
    if family == "cilium":
        return validate_cilium_doc(doc, versions.cilium, k8s_minor=minor, cache_dir=cache_dir)
    if family == "gateway":
        return validate_gateway_doc(doc, versions.gateway_api, k8s_minor=minor, cache_dir=cache_dir)
    if family == "kubernetes":
        return validate_k8s_doc(doc, minor)
    return [f"$.apiVersion: no schema source known for {doc.get('apiVersion')!r}"]


def validate_rendered(
    rendered: Any, versions: SchemaVersions, *, frr: bool = True, cache_dir: Path | None = None
) -> dict[str, list[str]]:
    """Every problem of a rendered directory (a :class:`generators.readback.rendered.Rendered`), by location.

    Keys are ``file#index Kind/ns/name`` for documents, ``cilium/values.yaml`` and ``frr/frr.conf``;
    an empty dict means every file was accepted. For ``gen --validate``.
    """
    problems: dict[str, list[str]] = {}
    for doc in rendered.docs:
        errors = validate_document(doc.body, versions, cache_dir)
        if errors:
            problems[f"{doc.file}#{doc.index} {doc.ref}"] = errors
    if rendered.cilium_values:
        errors = validate_cilium_values(rendered.cilium_values, versions.cilium, cache_dir=cache_dir)
        if errors:
            problems["cilium/values.yaml"] = errors
    if frr and rendered.frr_conf:
        ok, output = frr_dryrun(rendered.frr_conf)
        if not ok:
            problems["frr/frr.conf"] = output.splitlines()
    return problems


# --------------------------------------------------------------------------- FRR


class FrrResult(NamedTuple):
    ok: bool
    output: str


_BGPD_CANDIDATES = ("/usr/lib/frr/bgpd", "/usr/sbin/bgpd", "/usr/local/sbin/bgpd")
_BGPD_CONFIG_LINE = re.compile(r"on config line (\d+):(.*)$")


def _frr_tool(name: str, candidates: tuple[str, ...] = ()) -> str:
    found = shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if not found:
        raise SchemaSourceError(
            f"FRR: `{name}` not found; install FRR (Debian: `apt-get install frr`) to check frr.conf"
        )
    return found


def _vtysh_dryrun(conf: Path, config_dir: Path) -> tuple[bool, str]:
    proc = subprocess.run(
        [_frr_tool("vtysh"), "--config_dir", str(config_dir), "--dryrun", "-f", str(conf)],
        capture_output=True,
        text=True,
        timeout=FRR_TIMEOUT_S,
    )
    # vtysh's own warning about its (empty) vtysh.conf is not about the file under test
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode == 0, "\n".join(lines)


def _bgpd_check(conf: Path) -> tuple[bool, str]:
    """``bgpd -C``: runs every line through bgpd's command handlers (semantics, not only syntax).

    Its exit code is 0 whatever happens; failures are the "... on config line N: ..." log lines.
    "No such command" lines are not counted: vtysh has already accepted the syntax, so such a line
    belongs to another daemon (zebra, staticd, ...). ``-p 0``: do not listen on port 179;
    ``-Z``: no zebra; ``-S``: no user/capability switching (works unprivileged).
    """
    with subprocess.Popen(
        [_frr_tool("bgpd", _BGPD_CANDIDATES), "-C", "-S", "-Z", "-p", "0", "-f", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=FRR_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return False, f"bgpd -C did not finish in {FRR_TIMEOUT_S} s"
    _remove_crashlog_dir(proc.pid)
    text = stdout + stderr
    failures = [ln for ln in text.splitlines() if _BGPD_CONFIG_LINE.search(ln) and "No such command" not in ln]
    reasons = [ln for ln in text.splitlines() if ln.startswith("%") and "vtysh.conf" not in ln]
    if proc.returncode != 0:
        return False, f"bgpd -C exited {proc.returncode}:\n{text.strip()}"
    return not failures, "\n".join([*reasons, *failures])


def _remove_crashlog_dir(pid: int) -> None:
    """bgpd leaves an empty /var/tmp/frr/bgpd.<pid>/ behind; remove ours if it is empty."""
    try:
        Path(f"/var/tmp/frr/bgpd.{pid}").rmdir()
    except OSError:
        pass


def frr_dryrun(text: str) -> FrrResult:
    """Check an FRR config with the installed FRR: ``vtysh --dryrun`` (syntax, every daemon) and ``bgpd -C``.

    ``ok`` is True only when both accept it; ``output`` says what each one reported.
    """
    with tempfile.TemporaryDirectory(prefix="frr-check-") as tmp:
        conf = Path(tmp) / "frr.conf"
        conf.write_text(text, encoding="utf-8")
        conf.chmod(0o644)
        config_dir = Path(tmp) / "etc"
        config_dir.mkdir()
        (config_dir / "vtysh.conf").write_text("", encoding="utf-8")  # hermetic: not the host's vtysh.conf
        vtysh_ok, vtysh_out = _vtysh_dryrun(conf, config_dir)
        if not vtysh_ok:
            return FrrResult(False, f"vtysh --dryrun rejected it:\n{vtysh_out}")
        bgpd_ok, bgpd_out = _bgpd_check(conf)
        if not bgpd_ok:
            return FrrResult(False, f"vtysh --dryrun accepted the syntax; bgpd -C rejected it:\n{bgpd_out}")
        return FrrResult(True, "\n".join(x for x in ("vtysh --dryrun: ok", vtysh_out, "bgpd -C: ok", bgpd_out) if x))
