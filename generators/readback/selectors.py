"""Kubernetes label selectors (matchLabels / matchExpressions), as the apiserver evaluates them."""
from __future__ import annotations

from typing import Mapping

from generators.errors import InputError


class SelectorError(InputError, ValueError):
    """A selector that Kubernetes itself would reject."""


_OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist"}


def selector_matches(selector: Mapping | None, labels: Mapping[str, str] | None) -> bool:
    """True when ``labels`` satisfy ``selector``.

    An empty selector (``{}``) matches everything; a missing selector (``None``) matches nothing,
    which is how Cilium treats an absent nodeSelector/service selector on its BGP resources
    only where the CRD says so -- callers decide what ``None`` means for them before calling.
    """
    if selector is None:
        return False
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(str(key)) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key = str(expr.get("key", ""))
        op = expr.get("operator")
        values = [str(v) for v in (expr.get("values") or [])]
        if op not in _OPERATORS:
            raise SelectorError(f"unknown operator {op!r} for key {key!r}; use one of {sorted(_OPERATORS)}")
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"operator {op} on key {key!r} needs a non-empty values list")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"operator {op} on key {key!r} must not have values")
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def describe_selector(selector: Mapping | None) -> str:
    """A short human form, e.g. ``app.kubernetes.io/name exists, advertise=bgp``."""
    if selector is None:
        return "<none>"
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        key = expr.get("key")
        if op == "Exists":
            parts.append(f"{key} exists")
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            parts.append(f"{key} {op.lower() if op else '?'} ({', '.join(map(str, expr.get('values') or []))})")
    return ", ".join(parts) if parts else "<everything>"
