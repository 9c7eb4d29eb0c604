"""Server-side apply, delete, get and list for any kind, and the polling loop every wait of this project uses.

Resources are found by API discovery (``GET /api/v1``, ``GET /apis/GROUP/VERSION``), cached per client and
refreshed when a kind is not (yet) known, so CRDs and their custom resources work like built-in kinds, in
the same call too: a CR whose CRD is applied in the same :func:`apply_documents` waits (bounded) until the
API server serves it.

What an apply does is read back from the server, never guessed: the live object is read before, and the
object the apply returns is compared with it (metadata.managedFields/resourceVersion/generation/uid/
creationTimestamp and status left out), so a second identical apply is ``unchanged``. A field owned by
another field manager is a ``conflict`` that overwrites nothing unless ``force_conflicts``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import time
import urllib.parse
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from kubernetes import client as k8s

from .. import FIELD_MANAGER
from ..errors import CheckFailed, EnvironmentProblem, InputError
from .client import ApiRequestFailed, expect, request, server_of

APPLY_PATCH = "application/apply-patch+yaml"
DISCOVERY_TIMEOUT = 30.0  # how long a kind whose CRD was just applied may take to be served
IGNORED_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")
ACTIONS = ("created", "changed", "unchanged", "conflict")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- polling
@dataclass(frozen=True)
class NotYet:
    """What a :func:`wait_until` condition returns to say "not yet" together with what it saw."""

    state: object


def wait_until(condition: Callable[[], T | NotYet | None], timeout: float, interval: float, what: str) -> T:
    """Poll ``condition`` until it returns a value (not ``None``, not :class:`NotYet`); return that value.

    ``condition`` is called at least once. An :class:`~generators.errors.EnvironmentProblem` or
    :class:`~generators.cluster.client.ApiRequestFailed` it raises (the server is still starting, say) counts
    as "not yet", with its message as the observed state; anything else (bad input, a bug) propagates. On
    timeout raise :class:`~generators.errors.CheckFailed` naming ``what``, the time waited and the last
    observed state.
    """
    start = time.monotonic()
    deadline = start + max(0.0, timeout)
    last: object = "nothing observed yet"
    while True:
        try:
            got = condition()
        except (EnvironmentProblem, ApiRequestFailed) as exc:
            got, last = None, f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(got, NotYet):
                last = got.state
            elif got is not None:
                return got
            else:
                last = "not yet"
        now = time.monotonic()
        if now >= deadline:
            raise CheckFailed(f"timed out after {now - start:.1f}s waiting for {what}; last observed: {last}")
        time.sleep(min(interval, deadline - now))  # the polling interval of this loop


# --------------------------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class Resource:
    """One kind as the API server serves it."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{_q(namespace)}"
        base += f"/{self.plural}"
        return base + (f"/{_q(name)}" if name else "")


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


_DISCOVERY: weakref.WeakKeyDictionary[k8s.ApiClient, dict[str, dict[str, Resource]]] = weakref.WeakKeyDictionary()


def _discover(client: k8s.ApiClient, api_version: str) -> dict[str, Resource]:
    """Kinds served in one group/version (``{}`` when the group/version is not served), fresh from the server."""
    if not api_version or api_version.count("/") > 1:
        raise InputError(f"apiVersion {api_version!r} is not valid; write it as v1 or GROUP/VERSION")
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    status, data = request(client, "GET", path)
    if status == 404:
        return {}
    if status != 200:
        raise ApiRequestFailed(f"discovery of {api_version} at {server_of(client)}: {status} "
                               f"{data.get('message', data)}", status, data)
    return {
        r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
        for r in data.get("resources", [])
        if "/" not in r.get("name", "/")  # not a subresource
    }


def find_resource(client: k8s.ApiClient, api_version: str, kind: str, *, wait: float = 0.0) -> Resource | None:
    """The served resource of ``kind`` in ``api_version``; refresh discovery (for up to ``wait`` seconds) if unknown."""
    cache = _DISCOVERY.setdefault(client, {})
    if api_version in cache and kind in cache[api_version]:
        return cache[api_version][kind]

    def look() -> Resource | NotYet:
        cache[api_version] = _discover(client, api_version)
        found = cache[api_version].get(kind)
        return found if found else NotYet(f"{api_version} serves {sorted(cache[api_version]) or 'nothing'}")

    first = look()
    if isinstance(first, Resource) or wait <= 0:
        return first if isinstance(first, Resource) else None
    return wait_until(look, wait, 0.2, f"the API server at {server_of(client)} to serve {kind} in {api_version}")


# -------------------------------------------------------------------------------------------------- results
@dataclass
class DocResult:
    """What one apply did (or, with dry_run, would do) to one object."""

    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    action: str  # one of ACTIONS
    fields: list[str] = field(default_factory=list)  # field paths that change (all set fields when created)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (field path, manager that owns it)
    object: dict[str, Any] | None = None  # as the server returned it (the live object on a conflict)
    dry_run: bool = False
    note: str = ""

    @property
    def ref(self) -> str:
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)

    def render(self) -> str:
        line = f"{self.ref}: {self.action}{' (dry run)' if self.dry_run else ''}"
        if self.fields:
            line += " " + ", ".join(self.fields)
        for path, manager in self.conflicts:
            line += f"\n  conflict: {path} is owned by {manager}"
        return line + (f"\n  note: {self.note}" if self.note else "")


@dataclass(frozen=True)
class DeleteResult:
    api_version: str
    kind: str
    namespace: str
    name: str
    action: str  # "deleted" or "absent"
    dry_run: bool = False
    note: str = ""

    @property
    def ref(self) -> str:
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)


# ----------------------------------------------------------------------------------------------- diffing
def comparable(obj: dict[str, Any] | None) -> dict[str, Any]:
    """``obj`` without what every write changes: status and metadata's bookkeeping fields."""
    if not obj:
        return {}
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in IGNORED_METADATA:
            meta.pop(key, None)
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*")


def _join(prefix: str, key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def _leaves(value: Any, path: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [p for k in sorted(value) for p in _leaves(value[k], _join(path, str(k)))]
    return [path]


_IDENTITY = {"apiVersion", "kind", "metadata.name", "metadata.namespace"}


def _set_fields(doc: dict[str, Any]) -> list[str]:
    """The fields a document sets, without those that name it."""
    return [p for p in _leaves(comparable(doc), "") if p not in _IDENTITY]


def changed_paths(before: Any, after: Any, path: str = "") -> list[str]:
    """Field paths where ``after`` differs from ``before``: ``spec.timers.holdTimeSeconds``, ``endpoints[2]``.

    Maps are compared key by key (a map only on one side is listed by its leaves), lists element by element
    (an element only on one side is listed by its index), anything else by value.
    """
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = _join(path, str(key))
            if key not in before:
                out += _leaves(after[key], sub)
            elif key not in after:
                out += _leaves(before[key], sub)
            else:
                out += changed_paths(before[key], after[key], sub)
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for i in range(max(len(before), len(after))):
            sub = f"{path}[{i}]"
            if i >= len(before) or i >= len(after):
                out.append(sub)
            else:
                out += changed_paths(before[i], after[i], sub)
        return out
    return [path]


_MANAGER = re.compile(r'conflict with "([^"]*)"')


def parse_conflicts(status: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, manager) for every FieldManagerConflict cause of a 409 Status."""
    out = []
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") != "FieldManagerConflict":
            continue
        m = _MANAGER.search(cause.get("message", ""))
        out.append((str(cause.get("field", "")).lstrip("."), m.group(1) if m else cause.get("message", "")))
    return out


# -------------------------------------------------------------------------------------------------- apply
def _ident(doc: Any, index: int) -> tuple[str, str, str, str]:
    if not isinstance(doc, dict):
        raise InputError(f"document {index} is a {type(doc).__name__}, not a mapping; every document must be a "
                         "Kubernetes object with apiVersion, kind and metadata.name")
    raw_meta = doc.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    api_version, kind, name = doc.get("apiVersion"), doc.get("kind"), meta.get("name")
    missing = [k for k, v in (("apiVersion", api_version), ("kind", kind), ("metadata.name", name)) if not v]
    if missing:
        shown = "/".join(str(p) for p in (kind, name) if p) or "?"
        raise InputError(f"document {index} ({shown}) has no {', '.join(missing)}; every document must have "
                         "apiVersion, kind and metadata.name (generateName is not supported)")
    return str(api_version), str(kind), str(meta.get("namespace") or ""), str(name)


def _crd_kinds(docs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> CRD name, for every CustomResourceDefinition among ``docs``."""
    out = {}
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        spec = d.get("spec") or {}
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        for v in spec.get("versions") or []:
            if group and kind and v.get("served", True):
                out[(f"{group}/{v.get('name')}", str(kind))] = str((d.get("metadata") or {}).get("name", ""))
    return out


def _priority(doc: dict[str, Any]) -> int:
    """Namespaces and CRDs first: what the other documents of the same apply may need."""
    return 0 if doc.get("kind") in ("Namespace", "CustomResourceDefinition") else 1


def apply_documents(client: k8s.ApiClient, docs: list[dict], *, dry_run: bool = False,
                    force_conflicts: bool = False, field_manager: str = FIELD_MANAGER,
                    discovery_timeout: float = DISCOVERY_TIMEOUT) -> list[DocResult]:
    """Server-side apply every document; one :class:`DocResult` per document, in the order given.

    Namespaces and CRDs are applied first. A namespaced document without a namespace goes to ``default``.
    A kind the server does not serve is looked up again (discovery refreshed) for up to ``discovery_timeout``
    seconds when its CRD is among ``docs`` or already on the server, else it is an InputError at once.
    With ``dry_run`` nothing is written (``dryRun=All``); a custom resource whose CRD only this apply would
    create cannot be checked by the server then, and is reported ``created`` with a note saying so.
    """
    idents = [_ident(d, i) for i, d in enumerate(docs)]
    batch_crds = _crd_kinds(docs)
    results: dict[int, DocResult] = {}
    for i in sorted(range(len(docs)), key=lambda i: _priority(docs[i])):
        results[i] = _apply_one(client, docs[i], idents[i], batch_crds, dry_run=dry_run,
                                force=force_conflicts, manager=field_manager, discovery_timeout=discovery_timeout)
    return [results[i] for i in range(len(docs))]


def _resolve(client: k8s.ApiClient, api_version: str, kind: str, batch_crds: dict[tuple[str, str], str],
             dry_run: bool, discovery_timeout: float) -> Resource | str:
    """The resource, or why there is none (a note for a dry run's CR of a CRD in the same apply)."""
    found = find_resource(client, api_version, kind)
    if found:
        return found
    crd = batch_crds.get((api_version, kind))
    if crd and dry_run:
        return f"not checked by the server: its CRD {crd} is created by this apply"
    if crd or _crd_on_server(client, api_version, kind):
        found = find_resource(client, api_version, kind, wait=discovery_timeout)
        if found:
            return found
    raise InputError(f"the API server at {server_of(client)} serves no kind {kind} in apiVersion {api_version}; "
                     "check apiVersion and kind, or install (apply) the CRD that defines it first")


def _crd_on_server(client: k8s.ApiClient, api_version: str, kind: str) -> bool:
    if "/" not in api_version:
        return False
    group = api_version.split("/")[0]
    status, data = request(client, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    if status != 200:
        return False
    return any(
        (c.get("spec") or {}).get("group") == group and ((c.get("spec") or {}).get("names") or {}).get("kind") == kind
        for c in data.get("items") or []
    )


def _apply_one(client: k8s.ApiClient, doc: dict[str, Any], ident: tuple[str, str, str, str],
               batch_crds: dict[tuple[str, str], str], *, dry_run: bool, force: bool, manager: str,
               discovery_timeout: float) -> DocResult:
    api_version, kind, namespace, name = ident
    resource = _resolve(client, api_version, kind, batch_crds, dry_run, discovery_timeout)
    if isinstance(resource, str):
        return DocResult(api_version, kind, namespace, name, "created", _set_fields(doc),
                         object=None, dry_run=True, note=resource)
    body = copy.deepcopy(doc)
    if resource.namespaced:
        namespace = namespace or "default"
        body["metadata"]["namespace"] = namespace
    else:
        namespace = ""
        body["metadata"].pop("namespace", None)
    path = resource.path(name, namespace)
    ref = "/".join(p for p in (kind, namespace, name) if p)
    live = _get(client, path)

    def patch(force_it: bool, dry: bool) -> tuple[int, dict[str, Any]]:
        query = [("fieldManager", manager)]
        if force_it:
            query.append(("force", "true"))
        if dry:
            query.append(("dryRun", "All"))
        return request(client, "PATCH", path, query=query, body=body, content_type=APPLY_PATCH)

    status, data = patch(force, dry_run)
    if status in (200, 201):
        before, after = comparable(live), comparable(data)
        if live is None:
            action, fields = "created", _set_fields(doc)
        else:
            fields = changed_paths(before, after)
            action = "changed" if fields else "unchanged"
        return DocResult(api_version, kind, namespace, name, action, fields, object=data, dry_run=dry_run)
    conflicts = parse_conflicts(data) if status == 409 else []
    if conflicts:
        # what forcing would change, asked of the server without writing anything
        f_status, forced = patch(True, True)
        fields = changed_paths(comparable(live), comparable(forced)) if f_status in (200, 201) else []
        return DocResult(api_version, kind, namespace, name, "conflict", fields, conflicts, object=live,
                         dry_run=dry_run)
    message = data.get("message", data)
    if status == 404 and resource.namespaced and f'namespaces "{namespace}" not found' in str(message):
        raise InputError(f"{ref}: namespace {namespace} does not exist on {server_of(client)}; add a Namespace "
                         "document to the apply (or create it first)")
    if status in (400, 422):
        raise InputError(f"{ref}: the API server at {server_of(client)} rejected it ({status} "
                         f"{data.get('reason', '')}): {message}")
    raise ApiRequestFailed(f"{ref}: apply to {server_of(client)} failed: {status} {data.get('reason', '')}: "
                           f"{message}", status, data)


def _get(client: k8s.ApiClient, path: str) -> dict[str, Any] | None:
    status, data = request(client, "GET", path)
    if status == 404:
        return None
    if status != 200:
        raise ApiRequestFailed(f"GET {server_of(client)}{path}: {status} {data.get('message', data)}", status, data)
    return data


# ------------------------------------------------------------------------------------------ read, delete
def get_object(client: k8s.ApiClient, api_version: str, kind: str, name: str,
               namespace: str | None = None) -> dict[str, Any] | None:
    """The live object, or ``None`` when it does not exist (or its kind is not served, so it cannot exist)."""
    resource = find_resource(client, api_version, kind)
    if resource is None:
        return None
    return _get(client, resource.path(name, (namespace or "default") if resource.namespaced else None))


def list_objects(client: k8s.ApiClient, api_version: str, kind: str, namespace: str | None = None,
                 label_selector: str | None = None) -> list[dict[str, Any]]:
    """Every object of ``kind`` (in ``namespace``, or in all namespaces when ``None``), each with apiVersion/kind."""
    resource = find_resource(client, api_version, kind)
    if resource is None:
        return []
    query = [("labelSelector", label_selector)] if label_selector else []
    data = expect(client, "GET", resource.path(None, namespace), ok=(200,), query=query)
    return [{"apiVersion": api_version, "kind": kind, **item} for item in data.get("items") or []]


def ref_of(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name) of a document, for :func:`delete_documents`."""
    return _ident(doc, 0)


def _delete_priority(ref: tuple[str, str, str | None, str]) -> int:
    """Custom resources before their CRDs, everything before Namespaces."""
    return {"CustomResourceDefinition": 1, "Namespace": 2}.get(ref[1], 0)


def delete_documents(client: k8s.ApiClient, refs: Iterable[tuple[str, str, str | None, str]], *,
                     dry_run: bool = False, wait_timeout: float | None = None) -> list[DeleteResult]:
    """Delete (apiVersion, kind, namespace, name) objects; one result per ref, in the order given.

    An object that is already gone (or whose kind is no longer served) is ``absent``, not an error. With
    ``wait_timeout`` (and not ``dry_run``), wait until every deleted object is really gone (finalizers).
    """
    refs = list(refs)
    results: dict[int, DeleteResult] = {}
    for i in sorted(range(len(refs)), key=lambda i: _delete_priority(refs[i])):
        results[i] = _delete_one(client, refs[i], dry_run)
    if wait_timeout is not None and not dry_run:
        for r in results.values():
            if r.action == "deleted":
                wait_until(functools.partial(_gone, client, r), wait_timeout, 0.2, f"{r.ref} to be deleted")
    return [results[i] for i in range(len(refs))]


def _gone(client: k8s.ApiClient, r: DeleteResult) -> bool | NotYet:
    live = get_object(client, r.api_version, r.kind, r.name, r.namespace or None)
    if live is None:
        return True
    meta = live.get("metadata") or {}
    return NotYet(f"still there (deletionTimestamp {meta.get('deletionTimestamp')}, "
                  f"finalizers {meta.get('finalizers') or []})")


def _delete_one(client: k8s.ApiClient, ref: tuple[str, str, str | None, str], dry_run: bool) -> DeleteResult:
    api_version, kind, namespace, name = ref
    resource = find_resource(client, api_version, kind)
    if resource is None:
        return DeleteResult(api_version, kind, namespace or "", name, "absent", dry_run,
                            note=f"{server_of(client)} serves no {kind} in {api_version}")
    ns = (namespace or "default") if resource.namespaced else ""
    # dryRun goes in the DeleteOptions body: with a body, the apiserver ignores the query's dryRun (and deletes)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    if dry_run:
        body["dryRun"] = ["All"]
    status, data = request(client, "DELETE", resource.path(name, ns), body=body)
    if status in (200, 202):
        return DeleteResult(api_version, kind, ns, name, "deleted", dry_run)
    if status == 404:
        return DeleteResult(api_version, kind, ns, name, "absent", dry_run)
    ref_s = "/".join(p for p in (kind, ns, name) if p)
    raise ApiRequestFailed(f"{ref_s}: delete on {server_of(client)} failed: {status} {data.get('message', data)}",
                           status, data)
