"""Prometheus HTTP API v1 JSON, written as text so numbers look exactly like Prometheus's (FORMATS.md §10.4).

Python's ``json`` cannot be used for the numbers: sample timestamps are integer milliseconds rendered
with a zero-padded 3-digit fraction, sample values are Go ``FormatFloat`` strings with Go's exponent
thresholds, and scalar/string timestamps are Go ``encoding/json`` floats. Strings are escaped as Go's
encoder does (``<``, ``>``, ``&`` as ``\\u003c`` …).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

import numpy as np

from thanostools.core.goformat import go_special
from thanostools.core.labels import Labels

__all__ = [
    "BAD_DATA",
    "ERROR_STATUS",
    "EXECUTION",
    "format_float_ts",
    "format_sample_ts",
    "format_sample_value",
    "format_scalar_value",
    "go_json_float",
    "go_json_string",
    "labels_json",
    "render_error",
    "render_success",
    "result_json",
    "string_list_json",
]

BAD_DATA = "bad_data"
EXECUTION = "execution"
# HTTP status per errorType as Prometheus 2.42 / Thanos answer (§10.5).
ERROR_STATUS = {
    BAD_DATA: 400, EXECUTION: 422, "canceled": 503, "timeout": 503, "internal": 500, "not_found": 404,
    "not_acceptable": 406, "unavailable": 500,
}


class SeriesLike(Protocol):
    labels: Labels
    t: np.ndarray
    v: np.ndarray


class ResultLike(Protocol):
    """What rendering needs from the evaluator's ``QueryResult``."""

    result_type: str

    @property
    def series(self) -> Sequence[SeriesLike]: ...

    @property
    def scalar(self) -> tuple[int, float] | None: ...

    @property
    def string(self) -> tuple[int, str] | None: ...


# --- numbers ---------------------------------------------------------------------------------------


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


# --- strings ---------------------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "<": "\\u003c", ">": "\\u003e",
            "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json_string(s: str) -> str:
    """A JSON string as Go's encoder writes it (HTML-safe; lone surrogates become U+FFFD)."""
    out = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def labels_json(labels: Labels) -> str:
    return "{" + ",".join(f"{go_json_string(n)}:{go_json_string(v)}" for n, v in labels) + "}"


def string_list_json(items: Iterable[str]) -> str:
    return "[" + ",".join(go_json_string(s) for s in items) + "]"


# --- query results ---------------------------------------------------------------------------------


def _point(ms: int, value: float) -> str:
    return f'[{format_sample_ts(ms)},"{format_sample_value(value)}"]'


def _values(s: SeriesLike) -> list[float]:
    v = np.asarray(s.v)
    floats: list[float] = (v.view(np.float64) if v.dtype == np.uint64 else v.astype(np.float64)).tolist()
    return floats


def _vector_json(series: Sequence[SeriesLike]) -> str:
    items = []
    for s in series:
        t = int(s.t[0])
        v = _values(s)[0]
        items.append(f'{{"metric":{labels_json(s.labels)},"value":{_point(t, v)}}}')
    return "[" + ",".join(items) + "]"


def _matrix_json(series: Sequence[SeriesLike]) -> str:
    items = []
    for s in series:
        points = ",".join(_point(t, v) for t, v in zip(s.t.tolist(), _values(s), strict=True))
        items.append(f'{{"metric":{labels_json(s.labels)},"values":[{points}]}}')
    return "[" + ",".join(items) + "]"


def result_json(result: ResultLike) -> str:
    """The ``result`` member for the result's type."""
    kind = result.result_type
    if kind == "vector":
        return _vector_json(result.series)
    if kind == "matrix":
        return _matrix_json(result.series)
    if kind == "scalar":
        if result.scalar is None:
            raise ValueError("scalar result without a value")
        t, v = result.scalar
        return f'[{format_float_ts(t)},"{format_scalar_value(v)}"]'
    if kind == "string":
        if result.string is None:
            raise ValueError("string result without a value")
        t, text = result.string
        return f"[{format_float_ts(t)},{go_json_string(text)}]"
    raise ValueError(f"unknown result type {kind!r}")


def query_data_json_reference(result: ResultLike) -> str:
    """The value-by-value rendering: the definition ``fastjson`` is tested against."""
    return f'{{"resultType":{go_json_string(result.result_type)},"result":{result_json(result)}}}'


# --- envelopes -------------------------------------------------------------------------------------


def _annotations(warnings: Sequence[str], infos: Sequence[str]) -> str:
    out = ""
    if warnings:
        out += f',"warnings":{string_list_json(warnings)}'
    if infos:
        out += f',"infos":{string_list_json(infos)}'
    return out


def render_success(data_json: str, *, warnings: Sequence[str] = (), infos: Sequence[str] = ()) -> str:
    """A success body around already rendered ``data`` JSON text."""
    return f'{{"status":"success","data":{data_json}{_annotations(warnings, infos)}}}'


def render_error(error_type: str, message: str, *, data_json: str | None = None, warnings: Sequence[str] = (),
                 infos: Sequence[str] = ()) -> str:
    """An error body: ``{"status":"error","errorType":…,"error":…}`` (``data`` only when given)."""
    data = f',"data":{data_json}' if data_json is not None else ""
    return (f'{{"status":"error"{data},"errorType":{go_json_string(error_type)},'
            f'"error":{go_json_string(message)}{_annotations(warnings, infos)}}}')
