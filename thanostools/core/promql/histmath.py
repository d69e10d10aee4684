"""What PromQL's histogram functions compute from one native histogram (Prometheus 3.x ``quantile.go`` and
``histogramVariance``): quantile, fraction and variance over the histogram's buckets in ascending order.

Exponential buckets interpolate exponentially (uniform on a log scale), custom buckets and the zero bucket
linearly. The bucket walk is Prometheus' ``AllBucketIterator``: negative buckets from the most negative, the
zero bucket when it holds observations, then the positive buckets; bucket bounds reaching into the zero bucket
are cut at its edge.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from thanostools.core.histograms import MAX_FLOAT64, SCHEMA8_FRACTIONS
from thanostools.core.kernels.promql import compensated_sum
from thanostools.core.promql.floathist import FloatHistogram

_F64 = NDArray[np.float64]
_FRACTIONS = np.array(SCHEMA8_FRACTIONS, np.float64)

# What a native quantile or fraction has to report besides its value.
NAN_RESULT, NAN_SKEW, NAN_EXCLUDED = "nan_result", "nan_skew", "nan_excluded"


@dataclass(frozen=True)
class BucketWalk:
    """A histogram's buckets in ascending order of their bounds."""

    lower: _F64
    upper: _F64
    count: _F64


def _upper_bounds(h: FloatHistogram, idx: NDArray[np.int64]) -> _F64:
    """Upper bounds of positive buckets ``idx`` (bucket ``i`` of a negative span spans ``[-upper(i), -upper(i-1))``)."""
    if h.is_custom:
        bounds = np.concatenate([[-math.inf], h.custom_values, [math.inf]])
        return bounds[np.clip(idx + 1, 0, bounds.shape[0] - 1)].astype(np.float64)
    with np.errstate(over="ignore"):
        if h.schema <= 0:
            exp = idx << -h.schema
            out = np.ldexp(1.0, np.clip(exp, -2000, 2000).astype(np.int32))
            return np.where(exp == 1024, MAX_FLOAT64, out)
        frac = _FRACTIONS[(idx & ((1 << h.schema) - 1)) << (8 - h.schema)]
        exp = (idx >> h.schema) + 1
        out = np.ldexp(frac, np.clip(exp, -2000, 2000).astype(np.int32))
        return np.where((frac == 0.5) & (exp == 1025), MAX_FLOAT64, out)


# One decoded sample usually fills many (series, step) cells: its walk is built once while it is alive.
_WALKS: weakref.WeakKeyDictionary[FloatHistogram, BucketWalk] = weakref.WeakKeyDictionary()


def bucket_walk(h: FloatHistogram) -> BucketWalk:
    walk = _WALKS.get(h)
    if walk is None:
        walk = _WALKS[h] = _build_walk(h)
    return walk


def _build_walk(h: FloatHistogram) -> BucketWalk:
    zt = h.zero_threshold
    neg_idx, neg = h.neg_idx[::-1], h.neg[::-1]
    neg_lower, neg_upper = -_upper_bounds(h, neg_idx), -_upper_bounds(h, neg_idx - 1)
    neg_upper = np.where((neg_upper < 0) & (neg_upper > -zt), -zt, neg_upper)
    pos_lower, pos_upper = _upper_bounds(h, h.pos_idx - 1), _upper_bounds(h, h.pos_idx)
    pos_lower = np.where((pos_lower > 0) & (pos_lower < zt), zt, pos_lower)
    zero = [h.zero_count] if h.zero_count > 0 else []
    return BucketWalk(
        np.concatenate([neg_lower, [-zt] if zero else [], pos_lower]).astype(np.float64),
        np.concatenate([neg_upper, [zt] if zero else [], pos_upper]).astype(np.float64),
        np.concatenate([neg, zero, h.pos]).astype(np.float64),
    )


def _log2(x: float) -> float:
    return -math.inf if x == 0 else math.log2(x)


def _zero_bucket_bounds(h: FloatHistogram, lower: float, upper: float) -> tuple[float, float]:
    """A bucket around zero ends at 0 on the side where the histogram has no buckets at all."""
    if h.neg.shape[0] == 0 and h.pos.shape[0] > 0:
        return 0.0, upper
    if h.pos.shape[0] == 0 and h.neg.shape[0] > 0:
        return lower, 0.0
    return lower, upper


def quantile(q: float, h: FloatHistogram) -> tuple[float, str | None]:
    """``histogram_quantile(q, h)`` and, when NaN observations affect it, what to report."""
    if q < 0:
        return -math.inf, None
    if q > 1:
        return math.inf, None
    if h.count == 0 or math.isnan(q):
        return math.nan, None
    walk = bucket_walk(h)
    # NaN observations are counted but sit in no bucket: only the walk from below reaches the right rank then.
    forward = math.isnan(h.sum) or q < 0.5
    order = range(walk.count.shape[0]) if forward else range(walk.count.shape[0] - 1, -1, -1)
    rank = q * h.count if forward else (1 - q) * h.count
    lower = upper = in_bucket = count = 0.0
    stop = walk.count.shape[0]
    for step, i in enumerate(order):
        lower, upper, in_bucket = float(walk.lower[i]), float(walk.upper[i]), float(walk.count[i])
        if in_bucket == 0:
            continue
        count += in_bucket
        if count >= rank:
            stop = step + 1
            break
    if h.is_custom:
        if lower == -math.inf:
            if upper <= 0:
                return upper, None
            lower = 0.0
        elif upper == math.inf:
            return lower, None
    elif lower < 0 < upper:
        lower, upper = _zero_bucket_bounds(h, lower, upper)
    count = min(count, h.count)
    if count < rank:
        return (math.nan, NAN_RESULT) if math.isnan(h.sum) else (upper, None)
    rank = rank - (count - in_bucket) if forward else count - rank
    note = None
    if math.isnan(h.sum):
        rest = walk.count[list(order)[stop:]]
        if count + float(rest.sum()) < h.count:
            note = NAN_SKEW
    fraction = rank / in_bucket
    if h.is_custom or (lower <= 0 <= upper):
        return lower + (upper - lower) * fraction, note
    log_lower, log_upper = _log2(abs(lower)), _log2(abs(upper))
    if lower > 0:
        return 2.0 ** (log_lower + (log_upper - log_lower) * fraction), note
    return -(2.0 ** (log_upper + (log_lower - log_upper) * (1 - fraction))), note


def _rank_in_bucket(v: float, rank: float, lower: float, upper: float, count: float, linear: bool) -> float:
    """The rank of ``v`` inside bucket ``(lower, upper]`` holding ``count`` observations above ``rank``; a bucket
    reaching to -Inf cannot be interpolated: all of it counts as below ``v``."""
    if linear:
        if lower == -math.inf:
            return count
        return rank + count * (v - lower) / (upper - lower)
    log_lower, log_upper, log_v = _log2(abs(lower)), _log2(abs(upper)), _log2(abs(v))
    if v > 0:
        return rank + count * ((log_v - log_lower) / (log_upper - log_lower))
    return rank + count * (1 - (log_v - log_upper) / (log_lower - log_upper))


def fraction(lower: float, upper: float, h: FloatHistogram) -> tuple[float, str | None]:
    """``histogram_fraction(lower, upper, h)`` and whether NaN observations were left out of it."""
    if h.count == 0 or math.isnan(lower) or math.isnan(upper):
        return math.nan, None
    if lower >= upper:
        return 0.0, None
    walk = bucket_walk(h)
    n = walk.count.shape[0]
    rank = count = lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    j = 0
    while j < n:
        b_lo, b_up, b_count = float(walk.lower[j]), float(walk.upper[j]), float(walk.count[j])
        j += 1
        count += b_count
        linear = h.is_custom
        if b_lo <= 0 <= b_up:
            linear = True
            b_lo, b_up = _zero_bucket_bounds(h, b_lo, b_up)
        if not lower_set and b_lo >= lower:
            lower_rank, lower_set = rank, True
        if not upper_set and b_lo >= upper:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and b_lo < lower < b_up:
            lower_rank, lower_set = _rank_in_bucket(lower, rank, b_lo, b_up, b_count, linear), True
        if not upper_set and b_lo < upper < b_up:
            upper_rank, upper_set = _rank_in_bucket(upper, rank, b_lo, b_up, b_count, linear), True
        if lower_set and upper_set:
            break
        rank += b_count
    note = None
    if math.isnan(h.sum):
        count += float(walk.count[j:].sum())
        if count < h.count:
            note = NAN_EXCLUDED
    else:
        count = h.count
    if not lower_set or lower_rank > count:
        lower_rank = count
    if not upper_set or upper_rank > count:
        upper_rank = count
    return (upper_rank - lower_rank) / h.count, note


def variance(h: FloatHistogram) -> float:
    """``histogram_stdvar(h)``: every observation taken at its bucket's mean (geometric for exponential
    buckets, arithmetic for custom ones, 0 in the zero bucket)."""
    walk = bucket_walk(h)
    used = walk.count != 0
    lower, upper, counts = walk.lower[used], walk.upper[used], walk.count[used]
    with np.errstate(all="ignore"):
        mean = h.sum / h.count if h.count else math.nan
        if h.is_custom:
            values = (upper + lower) / 2.0
        else:
            geometric = np.sqrt(upper * lower) * np.where(upper < 0, -1.0, 1.0)
            values = np.where((lower <= 0) & (upper >= 0), 0.0, geometric)
        delta = values - mean
        terms = np.ascontiguousarray(counts * delta * delta, np.float64)
    total = float(compensated_sum(terms))
    return total / h.count if h.count else math.nan
