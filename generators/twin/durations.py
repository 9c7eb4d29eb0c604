"""google.protobuf.Duration in its JSON form, parsed the way protojson (Go) does.

Cilium reads CiliumEnvoyConfig ``resources[]`` with protojson, so a Duration must be a decimal number of
seconds with an ``s`` suffix: ``1s``, ``0.1s``, ``.5s``, ``1.s``, ``-2s``. Anything else (``100ms``, ``1m``,
``01s``, ``1e3s``, more than 9 fractional digits) makes the whole resource invalid.
"""
from __future__ import annotations

from decimal import Decimal

MAX_DURATION_SECONDS = 315_576_000_000  # +-10000 years, the range protojson accepts


class DurationError(ValueError):
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


def to_milliseconds(seconds: Decimal) -> int:
    """Whole milliseconds (rounded up, so that a non-zero duration never becomes 0)."""
    ms = seconds * 1000
    whole = int(ms)
    return whole + 1 if ms > whole else whole
