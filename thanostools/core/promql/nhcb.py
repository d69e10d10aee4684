"""Classic histograms as native histograms with custom buckets (NHCB), as Prometheus converts them (3.x
``convert_classic_histograms_to_nhcb`` and promqltest's ``load_with_nhcb``).

The ``<name>_bucket`` series of one histogram (same labels but ``le``) become, at every timestamp, one
histogram ``<name>`` with schema -53, the finite ``le`` bounds as custom bounds, per-bucket counts from the
cumulative ones, the count from the ``+Inf`` bucket and the sum from ``<name>_sum``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

import numpy as np

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql.floathist import FloatHistogram

_BUCKET_SUFFIX = "_bucket"


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _parse_le(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def classic_to_nhcb(loaded: Iterable[Labels], samples: Mapping[Labels, Mapping[int, object]],
                    ) -> dict[Labels, dict[int, FloatHistogram]]:
    """The NHCB series the given classic bucket series make (their ``_sum`` series read from ``samples``)."""
    groups: dict[Labels, list[tuple[float, Labels]]] = {}
    for labels in loaded:
        name = get(labels, METRIC_NAME)
        le = _parse_le(get(labels, "le")) if name.endswith(_BUCKET_SUFFIX) else None
        if le is None:
            continue
        base = tuple(sorted([(n, v) for n, v in labels if n not in (METRIC_NAME, "le")]
                            + [(METRIC_NAME, name.removesuffix(_BUCKET_SUFFIX))]))
        groups.setdefault(base, []).append((le, labels))
    out: dict[Labels, dict[int, FloatHistogram]] = {}
    for base, buckets in groups.items():
        buckets.sort()
        name = get(base, METRIC_NAME)
        sum_labels = tuple(sorted([(n, v) for n, v in base if n != METRIC_NAME] + [(METRIC_NAME, name + "_sum")]))
        sums = samples.get(sum_labels, {})
        times = sorted({t for _, lbls in buckets for t in samples.get(lbls, {})})
        points: dict[int, FloatHistogram] = {}
        for t in times:
            values = [samples.get(lbls, {}).get(t) for _, lbls in buckets]
            if any(not isinstance(v, int) for v in values):
                continue
            cumulative = np.array([_float(v) for v in values if isinstance(v, int)], np.float64)
            bounds = np.array([le for le, _ in buckets], np.float64)
            finite = bounds[~np.isinf(bounds)]
            counts = np.diff(np.concatenate([[0.0], cumulative]))
            total = float(cumulative[-1])
            sum_bits = sums.get(t)
            points[t] = FloatHistogram(
                schema=CUSTOM_BUCKETS_SCHEMA, count=total, sum=_float(sum_bits) if isinstance(sum_bits, int) else 0.0,
                pos_idx=np.arange(counts.shape[0], dtype=np.int64), pos=counts, custom_values=finite,
            )
        if points:
            out[base] = points
    return out
