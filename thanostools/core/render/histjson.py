"""Native histograms as Prometheus's HTTP API writes them (HISTOGRAMS.md H14: the ``<histogram>`` object with its
``buckets`` list) and as ``String()`` prints them (H15.2), from a decoded
:class:`~thanostools.core.histograms.HistogramBatch` sample or from a query result's
:class:`~thanostools.core.promql.floathist.FloatHistogram`: both go through one bucket view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA
from thanostools.core.goformat import format_g
from thanostools.core.histograms import HistogramBatch, bucket_upper
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.render.numbers import format_sample_value

# One bucket: (boundary rule as in H14.2, lower bound, upper bound, count: int for integer histograms, exact).
Bucket = tuple[int, float, float, int | float]


@dataclass(frozen=True)
class _View:
    """What rendering needs of one histogram; counts as Python numbers (ints for integer histograms)."""

    schema: int
    zero_threshold: float
    custom: NDArray[np.float64] | None
    pos_idx: Sequence[int]
    pos: Sequence[int | float]
    neg_idx: Sequence[int]
    neg: Sequence[int | float]
    zero_count: int | float
    count: int | float
    sum: float
    stale: bool = False


def _batch_view(batch: HistogramBatch, s: int) -> _View:
    lay = batch.layouts
    layout = int(batch.layout[s])
    schema = int(lay.schema[layout])
    pos_idx, neg_idx = lay.indices(layout)
    pos, neg = batch.sample_buckets(s)
    return _View(schema, float(lay.zero_threshold[layout]),
                 lay.custom(layout) if schema == CUSTOM_BUCKETS_SCHEMA else None,
                 pos_idx, pos.tolist(), neg_idx, neg.tolist(), batch.zero_count[s].item(),
                 batch.count[s].item(), float(batch.sum[s]), bool(batch.stale[s]))


def _float_view(h: FloatHistogram) -> _View:
    return _View(h.schema, h.zero_threshold, h.custom_values if h.is_custom else None, h.pos_idx.tolist(),
                 h.pos.tolist(), h.neg_idx.tolist(), h.neg.tolist(), h.zero_count, h.count, h.sum)


def _buckets(h: _View, *, clamp: bool) -> list[Bucket]:
    """The non-empty buckets (H14.2/H15.2): negative buckets from the most negative, the zero bucket, positive
    buckets. ``clamp`` limits bounds to the zero bucket as the HTTP API does (``String()`` does not). A stale
    marker has none."""
    if h.stale:
        return []
    schema, zt, custom = h.schema, h.zero_threshold, h.custom
    out: list[Bucket] = []
    for index, count in reversed(list(zip(h.neg_idx, h.neg, strict=True))):
        if count:
            lower = -bucket_upper(schema, index, custom)
            upper = -bucket_upper(schema, index - 1, custom)
            out.append((_rule(lower, upper), lower, min(upper, -zt) if clamp else upper, count))
    if h.zero_count > 0:
        out.append((3, -zt, zt, h.zero_count))
    for index, count in zip(h.pos_idx, h.pos, strict=True):
        if count:
            lower = bucket_upper(schema, index - 1, custom)
            upper = bucket_upper(schema, index, custom)
            if custom is not None:
                rule = 3 if index == 0 else 0
            else:
                rule = _rule(lower, upper)
                lower = max(lower, zt) if clamp else lower
            out.append((rule, lower, upper, count))
    return out


def histogram_buckets(batch: HistogramBatch, s: int, *, clamp: bool) -> list[Bucket]:
    """Sample s's non-empty buckets (see :func:`_buckets`)."""
    return _buckets(_batch_view(batch, s), clamp=clamp)


def float_histogram_buckets(h: FloatHistogram) -> list[Bucket]:
    """A query result's non-empty buckets as the HTTP API lists them (bounds clamped to the zero bucket)."""
    return _buckets(_float_view(h), clamp=True)


def _api_buckets(h: _View) -> list[list[int | str]]:
    return [[rule, format_sample_value(lower), format_sample_value(upper), format_sample_value(float(count))]
            for rule, lower, upper, count in _buckets(h, clamp=True)]


def api_buckets(batch: HistogramBatch, s: int) -> list[list[int | str]]:
    """Sample s's ``buckets`` list as Prometheus' HTTP API writes it (H14.2): empty buckets omitted, bounds
    clamped to the zero bucket."""
    return _api_buckets(_batch_view(batch, s))


_OPEN = {0: "(", 1: "[", 2: "(", 3: "["}
_CLOSE = {0: "]", 1: ")", 2: ")", 3: "]"}


def histogram_string(batch: HistogramBatch, s: int) -> str:
    """Sample s as Prometheus 3.x ``Histogram.String()`` / ``FloatHistogram.String()`` (H15.2), what
    ``promtool tsdb dump`` prints for it."""
    h = _batch_view(batch, s)
    parts = [f"{{count:{_count_string(h.count)}, sum:{format_g(h.sum)}"]
    for rule, lower, upper, n in _buckets(h, clamp=False):
        parts.append(f"{_OPEN[rule]}{format_g(lower)},{format_g(upper)}{_CLOSE[rule]}:{_count_string(n)}")
    return ", ".join(parts) + "}"


def _count_string(count: int | float) -> str:
    """``%d`` for integer histograms' counts, ``%g`` for float histograms'."""
    return str(count) if isinstance(count, int) else format_g(count)


def _rule(lower: float, upper: float) -> int:
    """API boundary rule (H14.2): 0 (l,u], 1 [l,u), 2 (l,u), 3 [l,u]; lower inclusive iff < 0, upper iff > 0."""
    lower_inclusive = lower < 0
    upper_inclusive = upper > 0
    if upper_inclusive:
        return 3 if lower_inclusive else 0
    return 1 if lower_inclusive else 2


def _api_object(h: _View) -> dict[str, Any]:
    out: dict[str, Any] = {"count": format_sample_value(float(h.count)), "sum": format_sample_value(h.sum)}
    buckets = _api_buckets(h)
    if buckets:
        out["buckets"] = buckets
    return out


def api_histogram(batch: HistogramBatch, s: int) -> dict[str, Any]:
    """Sample s as the API's ``<histogram>`` object (H14.2)."""
    return _api_object(_batch_view(batch, s))


def api_float_histogram(h: FloatHistogram) -> dict[str, Any]:
    """A query result's histogram as the API's ``<histogram>`` object (H14.2)."""
    return _api_object(_float_view(h))


def histogram_json(h: FloatHistogram) -> str:
    """:func:`api_float_histogram` as JSON text, keys in Prometheus' order (every number is a plain string
    of digits, sign, ``.``, ``e``, ``NaN`` or ``Inf``: nothing to escape)."""
    obj = _api_object(_float_view(h))
    text = f'{{"count":"{obj["count"]}","sum":"{obj["sum"]}"'
    if "buckets" in obj:
        text += ',"buckets":[' + ",".join(f'[{r},"{lo}","{up}","{n}"]' for r, lo, up, n in obj["buckets"]) + "]"
    return text + "}"


def histogram_summary(h: FloatHistogram) -> str:
    """A short readable form for tables: count, sum and how many buckets are populated, with the range they
    cover (4 significant digits), e.g. ``{count:14 sum:12 buckets:4 in [-1,2]}``."""
    buckets = _buckets(_float_view(h), clamp=True)
    text = f"{{count:{format_g(h.count)} sum:{format_g(h.sum)} buckets:{len(buckets)}"
    if buckets:
        text += f" in [{buckets[0][1]:.4g},{buckets[-1][2]:.4g}]"
    return text + "}"
