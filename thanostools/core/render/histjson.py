"""Native histograms as Prometheus's HTTP API writes them (HISTOGRAMS.md H14): the ``<histogram>`` object with its
``buckets`` list, from a decoded :class:`~thanostools.core.chunkenc.histogram.HistogramBatch`."""

from __future__ import annotations

from typing import Any

from thanostools.core.chunkenc.histogram import CUSTOM_BUCKETS_SCHEMA, HistogramBatch, bucket_upper
from thanostools.core.goformat import format_g
from thanostools.core.render.apijson import format_sample_value

# One bucket: (boundary rule as in H14.2, lower bound, upper bound, count: int for integer histograms, exact).
Bucket = tuple[int, float, float, int | float]


def histogram_buckets(batch: HistogramBatch, s: int, *, clamp: bool) -> list[Bucket]:
    """Sample s's non-empty buckets (H14.2/H15.2): negative buckets from the most negative, the zero bucket,
    positive buckets. ``clamp`` limits bounds to the zero bucket as the HTTP API does (``String()`` does not).
    A stale marker has none."""
    if bool(batch.stale[s]):
        return []
    lay = batch.layouts
    layout = int(batch.layout[s])
    schema = int(lay.schema[layout])
    zt = float(lay.zero_threshold[layout])
    custom = lay.custom(layout) if schema == CUSTOM_BUCKETS_SCHEMA else None
    pos_idx, neg_idx = lay.indices(layout)
    pos, neg = batch.sample_buckets(s)
    out: list[Bucket] = []
    for index, count in reversed(list(zip(neg_idx, neg.tolist(), strict=True))):
        if count:
            lower = -bucket_upper(schema, index, custom)
            upper = -bucket_upper(schema, index - 1, custom)
            out.append((_rule(lower, upper), lower, min(upper, -zt) if clamp else upper, count))
    zc = batch.zero_count[s].item()
    if zc > 0:
        out.append((3, -zt, zt, zc))
    for index, count in zip(pos_idx, pos.tolist(), strict=True):
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


def api_buckets(batch: HistogramBatch, s: int) -> list[list[int | str]]:
    """Sample s's ``buckets`` list as Prometheus' HTTP API writes it (H14.2): empty buckets omitted, bounds
    clamped to the zero bucket."""
    return [[rule, format_sample_value(lower), format_sample_value(upper), format_sample_value(float(count))]
            for rule, lower, upper, count in histogram_buckets(batch, s, clamp=True)]


_OPEN = {0: "(", 1: "[", 2: "(", 3: "["}
_CLOSE = {0: "]", 1: ")", 2: ")", 3: "]"}


def histogram_string(batch: HistogramBatch, s: int) -> str:
    """Sample s as Prometheus 3.x ``Histogram.String()`` / ``FloatHistogram.String()`` (H15.2), what
    ``promtool tsdb dump`` prints for it."""
    parts = [f"{{count:{_count_string(batch.count[s].item())}, sum:{format_g(float(batch.sum[s]))}"]
    for rule, lower, upper, n in histogram_buckets(batch, s, clamp=False):
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


def api_histogram(batch: HistogramBatch, s: int) -> dict[str, Any]:
    """Sample s as the API's ``<histogram>`` object (H14.2)."""
    out: dict[str, Any] = {"count": format_sample_value(float(batch.count[s])),
                           "sum": format_sample_value(float(batch.sum[s]))}
    buckets = api_buckets(batch, s)
    if buckets:
        out["buckets"] = buckets
    return out
