"""Prometheus HTTP API v1 JSON, written as text so numbers look exactly like Prometheus's (FORMATS.md §10.4).

Python's ``json`` cannot be used for the numbers: sample timestamps are integer milliseconds rendered
with a zero-padded 3-digit fraction, sample values are Go ``FormatFloat`` strings with Go's exponent
thresholds, and scalar/string timestamps are Go ``encoding/json`` floats. Strings are escaped as Go's
encoder does (``<``, ``>``, ``&`` as ``\\u003c`` …).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from thanostools.core.labels import Labels
from thanostools.core.render.histjson import histogram_json
from thanostools.core.render.numbers import (
    format_float_ts,
    format_sample_ts,
    format_sample_value,
    format_scalar_value,
    go_json_float,
)

if TYPE_CHECKING:
    from thanostools.core.promql.floathist import FloatHistogram

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
    """A result series: points ``t``/``v``; ``h`` (None: all floats) holds per point its native histogram or
    None where the point is a float."""

    labels: Labels
    t: np.ndarray
    v: np.ndarray
    h: list[FloatHistogram | None] | None


class ResultLike(Protocol):
    """What rendering needs from the evaluator's ``QueryResult``."""

    result_type: str

    @property
    def series(self) -> Sequence[SeriesLike]: ...

    @property
    def scalar(self) -> tuple[int, float] | None: ...

    @property
    def string(self) -> tuple[int, str] | None: ...


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


def histogram_point_json(ms: int, h: FloatHistogram) -> str:
    return f"[{format_sample_ts(ms)},{histogram_json(h)}]"


def histograms_member(s: SeriesLike) -> str:
    """The ``"histograms":[…]`` member of a matrix series (with its leading comma), "" when it has none."""
    if s.h is None:
        return ""
    points = [histogram_point_json(t, h) for t, h in zip(s.t.tolist(), s.h, strict=True) if h is not None]
    return ',"histograms":[' + ",".join(points) + "]" if points else ""


def float_mask(s: SeriesLike) -> np.ndarray | None:
    """Which points of the series are floats; None when all are."""
    if s.h is None:
        return None
    return np.fromiter((h is None for h in s.h), np.bool_, len(s.h))


def _vector_json(series: Sequence[SeriesLike]) -> str:
    items = []
    for s in series:
        t = int(s.t[0])
        h = s.h[0] if s.h is not None else None
        point = f'"histogram":{histogram_point_json(t, h)}' if h is not None else f'"value":{_point(t, _values(s)[0])}'
        items.append(f'{{"metric":{labels_json(s.labels)},{point}}}')
    return "[" + ",".join(items) + "]"


def _matrix_json(series: Sequence[SeriesLike]) -> str:
    items = []
    for s in series:
        mask = float_mask(s)
        t, v = s.t.tolist(), _values(s)
        pairs = zip(t, v, strict=True) if mask is None else \
            ((ms, x) for ms, x, keep in zip(t, v, mask.tolist(), strict=True) if keep)
        points = ",".join(_point(ms, x) for ms, x in pairs)
        values = f',"values":[{points}]' if points or mask is None else ""
        items.append(f'{{"metric":{labels_json(s.labels)}{values}{histograms_member(s)}}}')
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
