"""Numbers as Prometheus's HTTP API writes them (FORMATS.md §10.4): sample values and timestamps, scalar values,
Go ``encoding/json`` floats. Kept apart from :mod:`apijson` so :mod:`histjson` can use them too."""

from __future__ import annotations

import math
from decimal import Decimal

from thanostools.core.goformat import go_special


def _digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``|x| > 0`` and the decimal exponent of the first digit."""
    _, digit_tuple, exp = Decimal(repr(abs(x))).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    return digits.rstrip("0"), len(digits) - 1 + exp


def _positional(digits: str, exp: int) -> str:
    point = exp + 1  # digits before the decimal point
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _exponent(digits: str, exp: int, min_exp_digits: int) -> str:
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mant}e{'-' if exp < 0 else '+'}{abs(exp):0{min_exp_digits}d}"


def format_sample_value(v: float) -> str:
    """A vector/matrix sample value: positional between 1e-6 and 1e21, Go exponent form outside."""
    special = go_special(v)
    if special is not None:
        return special
    digits, exp = _digits(v)
    a = abs(v)
    text = _exponent(digits, exp, 2) if (a < 1e-6 or a >= 1e21) else _positional(digits, exp)
    return "-" + text if v < 0 else text


def format_scalar_value(v: float) -> str:
    """A scalar's value: always positional (``strconv.FormatFloat(v, 'f', -1, 64)``)."""
    special = go_special(v)
    if special is not None:
        return special
    digits, exp = _digits(v)
    text = _positional(digits, exp)
    return "-" + text if v < 0 else text


def go_json_float(v: float) -> str:
    """A float as Go ``encoding/json`` writes it (shortest digits; exponent below 1e-6 or from 1e21)."""
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"JSON cannot represent {v}")
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    digits, exp = _digits(v)
    a = abs(v)
    text = _exponent(digits, exp, 1) if (a < 1e-6 or a >= 1e21) else _positional(digits, exp)
    return "-" + text if v < 0 else text


def format_sample_ts(ms: int) -> str:
    """A vector/matrix timestamp: seconds with the millisecond part zero-padded to 3 digits when non-zero."""
    sign = "-" if ms < 0 else ""
    sec, frac = divmod(abs(ms), 1000)
    return f"{sign}{sec}.{frac:03d}" if frac else f"{sign}{sec}"


def format_float_ts(ms: int) -> str:
    """A scalar/string timestamp: ``float64(ms)/1000`` as a Go JSON number."""
    return go_json_float(ms / 1000)
