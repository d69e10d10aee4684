"""Classic histograms as native histograms with custom buckets (NHCB), as promqltest's ``load_with_nhcb`` adds
them (Prometheus 3.x ``convertnhcb``).

The classic series stay as they are; beside them, every ``<name>_bucket`` / ``<name>_count`` / ``<name>_sum``
series of one load command (same labels but ``le``) contributes, at each of its float timestamps, to one
histogram ``<name>`` with schema -53: the finite ``le`` bounds present at that timestamp become the custom
bounds, per-bucket counts come from the cumulative ones, the count from ``_count`` (else the highest bucket) and
the sum from ``_sum`` (else 0). A missing ``+Inf`` bucket is added with the count; a bucket series without a
sample at a timestamp is simply not part of that histogram. Inconsistent input (negative or non-cumulative
counts, a count that disagrees with the ``+Inf`` bucket, a timestamp with neither buckets nor a count) fails the
load, as it fails Prometheus' appender.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA
from thanostools.core.goformat import format_g
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.promql.parser.parse import _go_parse_float as go_parse_float

BUCKET_LABEL = "le"
_BUCKET, _COUNT, _SUM = "_bucket", "_count", "_sum"


class NHCBConversionError(ValueError):
    """Classic histogram samples that do not make a valid native histogram."""


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _suffix(name: str) -> tuple[str, str] | None:
    """``(suffix, base name)`` of a classic histogram series name, checked in Prometheus' order."""
    for suffix in (_BUCKET, _SUM, _COUNT):
        if name.endswith(suffix):
            return suffix, name.removesuffix(suffix)
    return None


def _bound(labels: Labels) -> float | None:
    try:
        le = float(go_parse_float(get(labels, BUCKET_LABEL)))
    except (ValueError, IndexError):
        return None
    return None if math.isnan(le) else le


@dataclass
class _Collected:
    """One timestamp's classic samples of one histogram."""

    buckets: dict[float, float] = field(default_factory=dict)
    count: float | None = None
    sum: float = 0.0

    def add(self, suffix: str, le: float, value: float) -> None:
        if suffix == _BUCKET:
            if value < 0:
                raise NHCBConversionError(f"bucket count must be non-negative: le={format_g(le)}, "
                                          f"count={format_g(value)}")
            self.buckets.setdefault(le, value)  # a duplicate bound (another spelling of it) is ignored
        elif suffix == _COUNT:
            if value < 0:
                raise NHCBConversionError(f"count must be non-negative: count={format_g(value)}")
            self.count = value
        else:
            self.sum = value

    def histogram(self) -> FloatHistogram:
        bounds = sorted(self.buckets)
        cumulative = [self.buckets[b] for b in bounds]
        for lo, hi in itertools.pairwise(cumulative):
            if hi < lo:
                raise NHCBConversionError(f"count is not cumulative: {format_g(hi)} < {format_g(lo)}")
        if self.count is None and not bounds:
            raise NHCBConversionError("count must be provided when no buckets are present")
        count = cumulative[-1] if self.count is None else self.count
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
            cumulative.append(count)
        if count != cumulative[-1]:
            raise NHCBConversionError(f"count mismatch: count={format_g(count)} != le=+Inf "
                                      f"count={format_g(cumulative[-1])}")
        counts = np.diff(np.array([0.0, *cumulative]))
        return FloatHistogram(
            schema=CUSTOM_BUCKETS_SCHEMA, count=count, sum=self.sum,
            pos_idx=np.arange(counts.shape[0], dtype=np.int64), pos=counts,
            custom_values=np.array(bounds[:-1], np.float64),
        ).compact()


def classic_to_nhcb(series: Iterable[tuple[Labels, Mapping[int, object]]],
                    ) -> dict[Labels, dict[int, FloatHistogram]]:
    """The NHCB series the classic histogram series of one load command make (float samples as float64 bits;
    histogram samples of those series are ignored)."""
    collected: dict[Labels, dict[int, _Collected]] = {}
    for labels, points in series:
        split = _suffix(get(labels, METRIC_NAME))
        if split is None:
            continue
        suffix, base_name = split
        le = math.inf
        if suffix == _BUCKET:
            bound = _bound(labels)
            if bound is None:
                continue
            le = bound
        base = tuple(sorted([(n, v) for n, v in labels if n not in (METRIC_NAME, BUCKET_LABEL)]
                            + [(METRIC_NAME, base_name)]))
        per_time = collected.setdefault(base, {})
        for t, value in points.items():
            if isinstance(value, int):
                per_time.setdefault(t, _Collected()).add(suffix, le, _float(value))
    return {base: {t: per_time[t].histogram() for t in sorted(per_time)} for base, per_time in collected.items()}
