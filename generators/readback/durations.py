"""google.protobuf.Duration in its JSON form, parsed the way protojson (Go) does.

Cilium reads CiliumEnvoyConfig ``resources[]`` with protojson, so a Duration must be a decimal number of
seconds with an ``s`` suffix: ``1s``, ``0.1s``, ``.5s``, ``1.s``, ``-2s``. Anything else (``100ms``, ``1m``,
``01s``, ``1e3s``, more than 9 fractional digits) makes the whole resource invalid.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator

from generators.errors import InputError

MAX_DURATION_SECONDS = 315_576_000_000  # +-10000 years, the range protojson accepts


class DurationError(InputError, ValueError):
    """A string protojson rejects as a google.protobuf.Duration."""


def _invalid(text: object) -> DurationError:
    return DurationError(f'proto: invalid google.protobuf.Duration value "{text}"')


def parse_proto_duration(text: object) -> Decimal:
    """Seconds as a Decimal; raises DurationError with protojson's wording on anything protojson rejects."""
    if not isinstance(text, str):
        raise _invalid(text)
    if len(text) < 2 or not text.endswith("s"):
        raise _invalid(text)
    body = text[:-1]
    negative = body[0] == "-"
    if body[0] in "+-":
        body = body[1:]
    if not body:
        raise _invalid(text)
    if body[0] == "0":
        integer, rest = "0", body[1:]
    elif body[0].isdigit() and body[0] in "123456789":
        end = 1
        while end < len(body) and body[end] in "0123456789":
            end += 1
        integer, rest = body[:end], body[end:]
    elif body[0] == ".":
        integer, rest = "0", body
    else:
        raise _invalid(text)
    fraction = ""
    if rest:
        if rest[0] != ".":
            raise _invalid(text)
        digits = rest[1:]
        count = 0
        while count < len(digits) and count < 9 and digits[count] in "0123456789":
            count += 1
        if digits[count:]:
            raise _invalid(text)
        fraction = digits[:count]
    seconds = Decimal(integer) + (Decimal(f"0.{fraction}") if fraction else Decimal(0))
    if int(integer) > MAX_DURATION_SECONDS:
        raise DurationError(f'proto: google.protobuf.Duration value out of range: "{text}"')
    return -seconds if negative else seconds


@dataclass(frozen=True)
class Duration:
    """A google.protobuf.Duration as written (``text``, rendered back verbatim) and its value in seconds.

    The one Duration type: the inventory model, the CCEC read-back and the drill bounds all use it.
    """

    text: str
    seconds: Decimal

    @classmethod
    def parse(cls, value: object) -> "Duration":
        """Raises DurationError (protojson's wording) for anything protojson rejects."""
        return cls(str(value), parse_proto_duration(value))

    def __str__(self) -> str:
        return self.text

    def __float__(self) -> float:
        return float(self.seconds)

    @property
    def milliseconds(self) -> int:
        return to_milliseconds(self.seconds)


def to_milliseconds(seconds: Decimal) -> int:
    """Whole milliseconds (rounded up, so that a non-zero duration never becomes 0)."""
    ms = seconds * 1000
    whole = int(ms)
    return whole + 1 if ms > whole else whole


# Envoy fields (snake_case; protojson also takes lowerCamelCase) whose type is google.protobuf.Duration,
# in the messages a CCEC carries (listeners, tcp_proxy, clusters, health checks, outlier detection, ...).
ENVOY_DURATION_FIELDS = frozenset({
    "access_log_flush_interval", "base_ejection_time", "base_interval", "cleanup_interval", "connect_timeout",
    "delayed_close_timeout", "dns_failure_refresh_rate", "dns_refresh_rate", "drain_timeout", "flush_interval",
    "grpc_timeout_header_max", "healthy_edge_interval", "http2_protocol_options_connection_keepalive_interval",
    "idle_timeout", "initial_jitter", "interval", "interval_jitter", "listener_filters_timeout",
    "max_connection_duration", "max_downstream_connection_duration", "max_ejection_time",
    "max_ejection_time_jitter", "max_interval", "max_stream_duration", "no_traffic_healthy_interval",
    "no_traffic_interval", "per_connection_buffer_limit_bytes_timeout", "per_try_idle_timeout", "per_try_timeout",
    "request_headers_timeout", "request_timeout", "stream_idle_timeout", "tcp_keepalive_interval", "timeout",
    "transport_socket_connect_timeout", "unhealthy_edge_interval", "unhealthy_interval",
})


def snake_case(key: str) -> str:
    """``intervalJitter`` -> ``interval_jitter`` (protojson accepts both spellings of a field)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def is_duration_field(key: str) -> bool:
    return snake_case(key) in ENVOY_DURATION_FIELDS


def find_durations(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (path, field name, value) of a Duration field anywhere in an Envoy resource, typed_config included."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if is_duration_field(str(key)) and not isinstance(value, (dict, list)):
                yield child, str(key), value
            else:
                yield from find_durations(value, child)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from find_durations(item, f"{path}[{i}]")


def is_proto_duration(value: object) -> bool:
    try:
        parse_proto_duration(value)
    except DurationError:
        return False
    return True


_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")


def suggest_duration(value: Any) -> str:
    """What to write instead of a value protojson rejects: ``100ms`` -> ``0.1s``, ``1m`` -> ``60s``, ``5`` -> ``5s``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}s"
    match = _GO_DURATION.match(str(value).strip())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    return "<seconds>s, e.g. 0.1s"
