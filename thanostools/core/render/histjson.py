"""Native histograms as Prometheus's HTTP API writes them (HISTOGRAMS.md H14): the ``<histogram>`` object with its
``buckets`` list, from a decoded :class:`~thanostools.core.chunkenc.histogram.HistogramBatch`."""

from __future__ import annotations

from typing import Any

from thanostools.core.chunkenc.histogram import CUSTOM_BUCKETS_SCHEMA, HistogramBatch, bucket_upper
from thanostools.core.render.apijson import format_sample_value


def api_buckets(batch: HistogramBatch, s: int) -> list[list[int | str]]:
    """Sample s's ``buckets`` list as Prometheus' HTTP API writes it (H14.2): negative buckets from the most
    negative, the zero bucket, positive buckets; empty buckets omitted; bounds clamped to the zero bucket."""
    lay = batch.layouts
    layout = int(batch.layout[s])
    schema = int(lay.schema[layout])
    zt = float(lay.zero_threshold[layout])
    custom = lay.custom(layout) if schema == CUSTOM_BUCKETS_SCHEMA else None
    pos_idx, neg_idx = lay.indices(layout)
    pos, neg = batch.sample_buckets(s)
    out: list[list[int | str]] = []
    for index, count in reversed(list(zip(neg_idx, neg.tolist(), strict=True))):
        if count:
            lower = -bucket_upper(schema, index, custom)
            upper = -bucket_upper(schema, index - 1, custom)
            rule = _rule(lower, upper)
            out.append([rule, format_sample_value(lower), format_sample_value(min(upper, -zt)),
                        format_sample_value(float(count))])
    zc = float(batch.zero_count[s])
    if zc > 0:
        out.append([3, format_sample_value(-zt), format_sample_value(zt), format_sample_value(zc)])
    for index, count in zip(pos_idx, pos.tolist(), strict=True):
        if count:
            lower = bucket_upper(schema, index - 1, custom)
            upper = bucket_upper(schema, index, custom)
            if custom is not None:
                rule = 3 if index == 0 else 0
            else:
                rule = _rule(lower, upper)
                lower = max(lower, zt)
            out.append([rule, format_sample_value(lower), format_sample_value(upper),
                        format_sample_value(float(count))])
    return out


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
