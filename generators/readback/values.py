"""Tolerant reading of values as people write them: quoted or not, flow or block lists, comma strings."""
from __future__ import annotations

import ipaddress
from typing import Any


def as_bool(value: Any) -> bool | None:
    """``True``/``"true"`` -> True, ``False``/``"false"`` -> False, anything else -> None (not a boolean)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def as_int(value: Any) -> int | None:
    """``65000``/``"65000"`` -> 65000; None for anything that is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def as_list(value: Any) -> list[str]:
    """A YAML list, or a comma-separated string (k3s and Cilium annotations accept both), as strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            out.extend(as_list(item) if isinstance(item, str) and "," in item else [str(item).strip()])
        return [v for v in out if v]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def as_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None


def get_path(data: Any, *keys: str | int) -> Any:
    """``get_path(d, "envoyConfig", "enabled")``; None when any step is missing or not a container."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(data, list) or key >= len(data):
                return None
            data = data[key]
        else:
            if not isinstance(data, dict):
                return None
            data = data.get(key)
    return data


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_seq(value: Any) -> list:
    return value if isinstance(value, list) else []


CILIUM_OWN_KEYS = frozenset({"bgpControlPlane", "kubeProxyReplacement", "envoyConfig"})


def cilium_chart_values(values: dict) -> tuple[dict, str]:
    """(Cilium's own values, their key prefix): the top level, or the ``cilium:`` block of an umbrella chart."""
    nested = values.get("cilium")
    if isinstance(nested, dict) and not CILIUM_OWN_KEYS & set(values):
        return nested, "cilium."
    return values, ""
