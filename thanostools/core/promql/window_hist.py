"""Range-vector functions over one window holding native histogram samples (Prometheus 3.x semantics).

Only windows that hold a histogram come here, one at a time; float-only windows stay in the batch kernels.
A window is given as its sample times and its samples: a :class:`FloatHistogram` or a float each. Annotations
go to ``note(kind, message)``; ``metric`` is the series' metric name they mention.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from thanostools.core.kernels import promql as kern
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.floathist import (
    HINT_GAUGE,
    HINT_NOT_RESET,
    HINT_RESET,
    FloatHistogram,
    IncompatibleSchemaError,
)

Note = Callable[[str, str], None]
Sample = FloatHistogram | float


def _warn(note: Note, message: str) -> None:
    note(ann.WARNING, message)


def _info(note: Note, message: str) -> None:
    note(ann.INFO, message)


# -- rate, increase, delta ---------------------------------------------------------------------------


def histogram_rate(hs: Sequence[FloatHistogram], is_counter: bool, metric: str,
                   note: Note) -> FloatHistogram | None:
    """The increase (counter) or difference (gauge) from the first to the last histogram of a window of at least
    two, as Prometheus' ``histogramRate``; None when the histograms cannot be combined."""
    first, last = hs[0], hs[-1]
    if is_counter and (first.is_gauge or last.is_gauge):
        _warn(note, ann.histogram_not_counter(metric))
    prev = first
    if is_counter and hs[1].detect_reset(first):
        # The first sample does not count after a reset: its layout need not be compatible.
        prev = FloatHistogram(schema=hs[1].schema, custom_values=hs[1].custom_values)
    if last.is_custom != prev.is_custom:
        _warn(note, ann.mixed_exponential_custom(metric))
        return None
    min_schema = min(last.schema, prev.schema)
    if is_counter:
        for h in hs[1:-1]:
            if h.is_gauge:
                _warn(note, ann.histogram_not_counter(metric))
            min_schema = min(min_schema, h.schema)
            if h.is_custom != prev.is_custom:
                _warn(note, ann.mixed_exponential_custom(metric))
                return None
    try:
        result, reconciled = last.reduce_resolution(min_schema).sub(prev)
        if reconciled:
            _info(note, ann.mismatched_custom_buckets(ann.HISTOGRAM_SUBTRACTION))
        if is_counter:
            before = prev
            for h in hs[1:]:
                if h.detect_reset(before):
                    result, reconciled = result.add(before)
                    if reconciled:
                        _info(note, ann.mismatched_custom_buckets(ann.HISTOGRAM_ADDITION))
                before = h
    except IncompatibleSchemaError:
        _warn(note, ann.mixed_exponential_custom(metric))
        return None
    if not is_counter and not (first.is_gauge and last.is_gauge):
        _warn(note, ann.histogram_not_gauge(metric))
    return result.with_hint(HINT_GAUGE).compact()


def extrapolated_histogram_rate(ts: np.ndarray, hs: Sequence[FloatHistogram], range_start: int, range_end: int,
                                range_ms: int, is_counter: bool, is_rate: bool, metric: str,
                                note: Note) -> FloatHistogram | None:
    """``rate``/``increase``/``delta`` of a window of two or more histograms."""
    result = histogram_rate(hs, is_counter, metric, note)
    if result is None:
        return None
    factor = kern.extrapolation_factor(int(ts[0]), int(ts[-1]), len(hs) - 1, range_start, range_end, range_ms,
                                       is_counter, is_rate, float(hs[0].count), float(result.count))
    return result.scale(factor)


# -- irate, idelta -----------------------------------------------------------------------------------


def instant_histogram_value(t0: int, h0: FloatHistogram, t1: int, h1: FloatHistogram, is_rate: bool,
                            metric: str, note: Note) -> FloatHistogram | None:
    """``irate``/``idelta`` from the window's last two samples, both histograms."""
    interval = t1 - t0
    if interval == 0:
        return None
    if is_rate and (h0.is_gauge or h1.is_gauge):
        _warn(note, ann.histogram_not_counter(metric))
    if not is_rate and not (h0.is_gauge and h1.is_gauge):
        _warn(note, ann.histogram_not_gauge(metric))
    result = h1
    if not is_rate or not h1.detect_reset(h0):
        try:
            result, reconciled = h1.sub(h0)
        except IncompatibleSchemaError:
            _warn(note, ann.mixed_exponential_custom(metric))
            return None
        if reconciled:
            _info(note, ann.mismatched_custom_buckets(ann.HISTOGRAM_SUBTRACTION))
    result = result.with_hint(HINT_GAUGE).compact()
    return result.divide(interval / 1000) if is_rate else result


# -- resets, changes ---------------------------------------------------------------------------------


def _float_bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def histograms_equal(a: FloatHistogram, b: FloatHistogram) -> bool:
    """Prometheus' ``Equals``: the same layout and the same counts and sum (NaN equal to NaN bit for bit); the
    counter-reset hint does not matter."""
    if a.schema != b.schema or a.zero_threshold != b.zero_threshold:
        return False
    if any(_float_bits(x) != _float_bits(y) for x, y in ((a.count, b.count), (a.sum, b.sum),
                                                           (a.zero_count, b.zero_count))):
        return False
    if a.is_custom and not np.array_equal(a.custom_values, b.custom_values):
        return False
    ca, cb = a.compact(), b.compact()
    return (np.array_equal(ca.pos_idx, cb.pos_idx) and np.array_equal(ca.pos, cb.pos)
            and np.array_equal(ca.neg_idx, cb.neg_idx) and np.array_equal(ca.neg, cb.neg))


def _is_change(prev: Sample, cur: Sample, resets: bool) -> bool:
    if isinstance(prev, FloatHistogram) and isinstance(cur, FloatHistogram):
        return cur.detect_reset(prev) if resets else not histograms_equal(cur, prev)
    if isinstance(prev, FloatHistogram) or isinstance(cur, FloatHistogram):
        return True  # a switch between float and histogram counts as both
    if resets:
        return cur < prev
    return cur != prev and not (math.isnan(cur) and math.isnan(prev))


def count_changes(samples: Sequence[Sample], resets: bool) -> float:
    """``changes`` (or ``resets``) over a window of floats and histograms in time order."""
    return float(sum(_is_change(a, b, resets) for a, b in itertools.pairwise(samples)))


# -- sum_over_time, avg_over_time --------------------------------------------------------------------


def _has_overflow(h: FloatHistogram) -> bool:
    return not (math.isfinite(h.count) and math.isfinite(h.sum) and math.isfinite(h.zero_count)
                and np.isfinite(h.pos).all() and np.isfinite(h.neg).all())


def _spread(idx: np.ndarray, counts: np.ndarray, union: np.ndarray) -> np.ndarray:
    out = np.zeros(union.shape[0])
    out[np.searchsorted(union, idx)] = counts
    return out


def _flat(h: FloatHistogram, pos_union: np.ndarray, neg_union: np.ndarray) -> np.ndarray:
    """count, sum, zero count, then the buckets on the given indices, as one array."""
    return np.concatenate([[h.count, h.sum, h.zero_count], _spread(h.pos_idx, h.pos, pos_union),
                           _spread(h.neg_idx, h.neg, neg_union)])


def _kahan_inc(inc: np.ndarray, total: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neumaier-compensated summation, element by element (as the kernels' ``kahan_inc``)."""
    with np.errstate(all="ignore"):
        t = total + inc
        step = np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
        return t, np.where(np.isinf(t), 0.0, c + step)


def kahan_add(total: FloatHistogram, comp: FloatHistogram,
              h: FloatHistogram) -> tuple[FloatHistogram, FloatHistogram, bool]:
    """``total + h`` with the compensation ``comp`` (kept on the sum's bucket layout), and whether mismatched
    custom bounds were reconciled."""
    s, x, reconciled = total.align(h)
    s, c, _ = s.align(comp)  # comp's layout is finer or equal: aligning it leaves the sum's as it is
    pos_u = np.union1d(np.union1d(s.pos_idx, x.pos_idx), c.pos_idx).astype(np.int64)
    neg_u = np.union1d(np.union1d(s.neg_idx, x.neg_idx), c.neg_idx).astype(np.int64)
    t, ct = _kahan_inc(_flat(x, pos_u, neg_u), _flat(s, pos_u, neg_u), _flat(c, pos_u, neg_u))
    n_pos = pos_u.shape[0]

    def unflat(v: np.ndarray) -> FloatHistogram:
        return replace(s, count=float(v[0]), sum=float(v[1]), zero_count=float(v[2]), pos_idx=pos_u,
                       pos=v[3 : 3 + n_pos], neg_idx=neg_u, neg=v[3 + n_pos :])

    return unflat(t), unflat(ct), reconciled


def _note_hints(hs: Sequence[FloatHistogram], note: Note) -> None:
    hints = {h.hint for h in hs}
    if HINT_RESET in hints and HINT_NOT_RESET in hints:
        _warn(note, ann.counter_reset_collision(ann.HISTOGRAM_AGGREGATION))


def sum_histograms(hs: Sequence[FloatHistogram], average: bool, metric: str, note: Note) -> FloatHistogram | None:
    """``sum_over_time`` (or ``avg_over_time``) of a window of histograms only, with compensated summation. The
    mean is taken from the sum while the sum stays finite, then incrementally."""
    _note_hints(hs, note)
    total = hs[0]
    comp = FloatHistogram(schema=total.schema, zero_threshold=total.zero_threshold,
                          custom_values=total.custom_values)
    mean: FloatHistogram | None = None
    reconciled_any = False
    try:
        for count, h in enumerate(hs[1:], start=2):
            if mean is None:
                new_total, new_comp, reconciled = kahan_add(total, comp, h)
                reconciled_any |= reconciled
                if not (average and _has_overflow(new_total)):
                    total, comp = new_total, new_comp
                    continue
                mean, comp = total.divide(count - 1), comp.divide(count - 1)
            q = (count - 1) / count
            mean, comp, reconciled = kahan_add(mean.scale(q), comp.scale(q), h.divide(count))
            reconciled_any |= reconciled
        if mean is not None:
            result = mean.add(comp)[0]
        elif average:
            result = total.divide(len(hs)).add(comp.divide(len(hs)))[0]
        else:
            result = total.add(comp)[0]
    except IncompatibleSchemaError:
        _warn(note, ann.mixed_exponential_custom(metric))
        return None
    if reconciled_any:
        _info(note, ann.mismatched_custom_buckets(ann.HISTOGRAM_AGGREGATION))
    return result
