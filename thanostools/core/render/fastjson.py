"""Query results as Prometheus API JSON, byte for byte what :mod:`apijson` writes, for large results.

:mod:`apijson` formats every sample through exact but slow digit handling. Here whole series are
formatted at once: ``float.__repr__`` already yields the shortest round-trip digits Go prints and,
for ``1e-4 <= |v| < 1e16``, in the same positional form (integers aside: ``'3.0'`` is Go's ``3``);
only the values outside that range go through :func:`apijson.format_sample_value`. Timestamps of a
matrix repeat across series (the step grid), so each distinct one is formatted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.labels import Labels, format_labels
from thanostools.core.render import apijson
from thanostools.core.render.apijson import ResultLike, SeriesLike, float_mask, histogram_point_json, histograms_member
from thanostools.core.render.histjson import histogram_json

if TYPE_CHECKING:
    from thanostools.core.promql.floathist import FloatHistogram

_POINT = '[%s,"%s"]'


def sample_values(v: np.ndarray) -> list[str]:
    """:func:`apijson.format_sample_value` of every value (a run of equal values is formatted once)."""
    values = np.ascontiguousarray(v, np.float64)
    n = int(values.shape[0])
    if n == 0:
        return []
    bits = values.view(np.uint64)
    change = np.concatenate([[True], bits[1:] != bits[:-1]])
    starts = np.flatnonzero(change)
    if starts.shape[0] == n:
        return _formatted(values)
    texts = _formatted(values[starts])
    if starts.shape[0] == 1:
        return texts * n
    runs: tuple[str, ...] = itemgetter(*(np.cumsum(change) - 1).tolist())(texts)
    return list(runs)


def _formatted(values: np.ndarray) -> list[str]:
    out: list[str] = list(map(float.__repr__, values.tolist()))
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        plain = (magnitude >= 1e-4) & (magnitude < 1e16)
        whole = plain & (np.trunc(values) == values)
    for i in np.flatnonzero(~plain).tolist():
        out[i] = apijson.format_sample_value(float(values[i]))
    for i in np.flatnonzero(whole).tolist():
        out[i] = out[i][:-2]
    return out


class _Times:
    """Formatted sample timestamps, each distinct timestamp formatted once."""

    def __init__(self, series: Sequence[SeriesLike]) -> None:
        ts = [np.asarray(s.t, np.int64) for s in series]
        self.grid = np.unique(np.concatenate(ts)) if ts else np.zeros(0, np.int64)
        self.text = [apijson.format_sample_ts(ms) for ms in self.grid.tolist()]

    def of(self, t: np.ndarray) -> tuple[str, ...]:
        idx = np.searchsorted(self.grid, np.asarray(t, np.int64)).tolist()
        if len(idx) == 1:
            return (self.text[idx[0]],)
        return tuple(itemgetter(*idx)(self.text)) if idx else ()


class _PairTexts(dict[tuple[str, str], str]):
    """``"name":"value"`` of every label pair seen, escaped once per process (bounded: cleared when full)."""

    def __missing__(self, pair: tuple[str, str]) -> str:
        if len(self) >= _MAX_CACHED_PAIRS:
            self.clear()
        text = self[pair] = f"{apijson.go_json_string(pair[0])}:{apijson.go_json_string(pair[1])}"
        return text


_MAX_CACHED_PAIRS = 1 << 17  # a few tens of MB at most
_PAIR_TEXTS = _PairTexts()


def labels_json(labels: Labels) -> str:
    """:func:`apijson.labels_json`, every distinct label pair escaped once."""
    return "{" + ",".join(map(_PAIR_TEXTS.__getitem__, labels)) + "}"


def _values(s: SeriesLike) -> np.ndarray:
    v = np.asarray(s.v)
    return v.view(np.float64) if v.dtype == np.uint64 else v.astype(np.float64)


def _points(times: tuple[str, ...], values: list[str]) -> str:
    interleaved: list[str] = [""] * (2 * len(values))
    interleaved[::2] = times
    interleaved[1::2] = values
    return ",".join([_POINT] * len(values)) % tuple(interleaved)


def _matrix_parts(series: Sequence[SeriesLike]) -> list[str]:
    times = _Times(series)
    parts = ["["]
    for s in series:
        mask = float_mask(s)
        if mask is None:
            parts += ['{"metric":', labels_json(s.labels), ',"values":[',
                      _points(times.of(s.t), sample_values(_values(s))), "]", "},"]
            continue
        parts += ['{"metric":', labels_json(s.labels)]
        if mask.any():
            parts += [',"values":[', _points(times.of(s.t[mask]), sample_values(_values(s)[mask])), "]"]
        parts += [histograms_member(s), "},"]
    if len(parts) > 1:
        parts[-1] = "}"
    parts.append("]")
    return parts


def _vector_parts(series: Sequence[SeriesLike]) -> list[str]:
    if not series:
        return ["[]"]
    if any(s.h is not None and s.h[0] is not None for s in series):
        return _vector_parts_with_histograms(series)
    return ["[", ",".join(map(_VECTOR_ITEM.__mod__, zip(map(labels_json, [s.labels for s in series]),
                                                         _point_times(series), _point_values(series),
                                                         strict=True))), "]"]


_VECTOR_ITEM = '{"metric":%s,"value":[%s,"%s"]}'


def _point_times(series: Sequence[SeriesLike]) -> list[str]:
    """The formatted timestamp of every series' one point (usually one and the same: the evaluation time)."""
    t = np.fromiter((s.t[0] for s in series), np.int64, len(series))
    grid, where = np.unique(t, return_inverse=True)
    texts = [apijson.format_sample_ts(ms) for ms in grid.tolist()]
    if len(texts) == 1:
        return texts * len(series)
    return list(itemgetter(*where.tolist())(texts))


def _point_values(series: Sequence[SeriesLike]) -> list[str]:
    """The formatted value of every series' one point (``v`` holds floats or their raw bits)."""
    if all(s.v.dtype == np.float64 for s in series):
        return sample_values(np.fromiter((s.v[0] for s in series), np.float64, len(series)))
    return sample_values(np.array([_values(s)[0] for s in series], np.float64))


def _vector_parts_with_histograms(series: Sequence[SeriesLike]) -> list[str]:
    times = _Times(series)
    values = sample_values(np.array([_values(s)[0] for s in series], np.float64))
    items = []
    for s, value in zip(series, values, strict=True):
        h = s.h[0] if s.h is not None else None
        if h is not None:
            items.append(f'{{"metric":{labels_json(s.labels)},"histogram":{histogram_point_json(int(s.t[0]), h)}}}')
            continue
        point = _POINT % (times.of(s.t[:1])[0], value)
        items.append(f'{{"metric":{labels_json(s.labels)},"value":{point}}}')
    return ["[", ",".join(items), "]"]


def matrix_json(series: Sequence[SeriesLike]) -> str:
    return "".join(_matrix_parts(series))


def vector_json(series: Sequence[SeriesLike]) -> str:
    return "".join(_vector_parts(series))


def query_data_json(result: ResultLike) -> str:
    """Exactly :func:`apijson.query_data_json_reference`, in bulk."""
    kind = result.result_type
    if kind == "matrix":
        parts = _matrix_parts(result.series)
    elif kind == "vector":
        parts = _vector_parts(result.series)
    else:
        return apijson.query_data_json_reference(result)
    return "".join([f'{{"resultType":{apijson.go_json_string(kind)},"result":', *parts, "}"])


def result_points(result: ResultLike, histogram_text: Callable[[FloatHistogram], str] = histogram_json,
                  ) -> Iterator[tuple[str, int, str]]:
    """(metric, timestamp ms, value text as the API writes it) for every sample of any result type; a native
    histogram's text is ``histogram_text`` of it (by default the API's ``<histogram>`` object)."""
    if result.result_type == "scalar" and result.scalar is not None:
        yield "", result.scalar[0], apijson.format_scalar_value(result.scalar[1])
    elif result.result_type == "string" and result.string is not None:
        yield "", result.string[0], result.string[1]
    for s in result.series:
        metric = format_labels(s.labels)
        texts = sample_values(s.v)
        if s.h is not None:
            texts = [text if h is None else histogram_text(h) for text, h in zip(texts, s.h, strict=True)]
        for t, v in zip(s.t.tolist(), texts, strict=True):
            yield metric, t, v
