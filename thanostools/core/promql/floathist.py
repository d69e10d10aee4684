"""Native histograms as PromQL computes with them: one float histogram per sample (Prometheus 3.x semantics).

Every histogram sample the engine reads, integer or float, becomes a :class:`FloatHistogram`, as in Prometheus'
engine. Buckets are kept by index (HISTOGRAMS.md H1.3: positive bucket ``i`` of an exponential schema covers
``(base^(i-1), base^i]``; custom-bucket index ``i`` is ``(bounds[i-1], bounds[i]]``) in ascending order, with
explicitly empty buckets allowed, as spans allow them. Values are immutable: every operation returns a new one,
so one decoded sample may sit in many (series, step) cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA
from thanostools.core.goformat import format_g
from thanostools.core.histograms import (
    HINT_GAUGE,
    HINT_NOT_RESET,
    HINT_RESET,
    HINT_UNKNOWN,
    HistogramBatch,
    HistogramSample,
    bucket_upper,
)

__all__ = [
    "HINT_GAUGE", "HINT_NOT_RESET", "HINT_RESET", "HINT_UNKNOWN", "FloatHistogram", "IncompatibleSchemaError",
    "from_batch", "hints_collide", "spans_of",
]

_I64 = NDArray[np.int64]
_F64 = NDArray[np.float64]
_NO_INDEX: _I64 = np.zeros(0, np.int64)
_NO_COUNT: _F64 = np.zeros(0, np.float64)


class IncompatibleSchemaError(ValueError):
    """Combining a histogram with exponential buckets and one with custom buckets."""


def _empty_i64() -> _I64:
    return _NO_INDEX


def _empty_f64() -> _F64:
    return _NO_COUNT


@dataclass(frozen=True, eq=False)
class FloatHistogram:
    schema: int = 0
    zero_threshold: float = 0.0
    zero_count: float = 0.0
    count: float = 0.0
    sum: float = 0.0
    pos_idx: _I64 = field(default_factory=_empty_i64)
    pos: _F64 = field(default_factory=_empty_f64)
    neg_idx: _I64 = field(default_factory=_empty_i64)
    neg: _F64 = field(default_factory=_empty_f64)
    custom_values: _F64 = field(default_factory=_empty_f64)
    hint: int = HINT_UNKNOWN

    # -- basic facts -------------------------------------------------------------------------

    @property
    def is_custom(self) -> bool:
        return self.schema == CUSTOM_BUCKETS_SCHEMA

    @property
    def is_gauge(self) -> bool:
        return self.hint == HINT_GAUGE

    def upper(self, index: int) -> float:
        """Upper bound of positive bucket ``index``."""
        return bucket_upper(self.schema, index, self.custom_values if self.is_custom else None)

    def lower(self, index: int) -> float:
        return self.upper(index - 1)

    def with_hint(self, hint: int) -> FloatHistogram:
        return self if hint == self.hint else replace(self, hint=hint)

    def compact(self) -> FloatHistogram:
        """The same histogram without empty buckets (Prometheus' ``Compact(0)``)."""
        pk, nk = self.pos != 0, self.neg != 0
        if pk.all() and nk.all():
            return self
        return replace(self, pos_idx=self.pos_idx[pk], pos=self.pos[pk], neg_idx=self.neg_idx[nk], neg=self.neg[nk])

    # -- arithmetic --------------------------------------------------------------------------

    def scale(self, factor: float) -> FloatHistogram:
        """Every count and the sum multiplied by ``factor`` (``h * f``); a negative factor makes a gauge."""
        hint = HINT_GAUGE if factor < 0 else self.hint
        with np.errstate(all="ignore"):
            return replace(self, zero_count=self.zero_count * factor, count=self.count * factor,
                           sum=self.sum * factor, pos=self.pos * factor, neg=self.neg * factor, hint=hint)

    def divide(self, divisor: float) -> FloatHistogram:
        """Every count and the sum divided by ``divisor`` (``h / f``; IEEE results for 0, where the buckets
        go away); a negative divisor makes a gauge."""
        if divisor == 0:
            return replace(self, zero_count=_div(self.zero_count, divisor), count=_div(self.count, divisor),
                           sum=_div(self.sum, divisor), pos_idx=_NO_INDEX, pos=_NO_COUNT, neg_idx=_NO_INDEX,
                           neg=_NO_COUNT)
        hint = HINT_GAUGE if divisor < 0 else self.hint
        with np.errstate(all="ignore"):
            return replace(self, zero_count=self.zero_count / divisor, count=self.count / divisor,
                           sum=self.sum / divisor, pos=np.divide(self.pos, divisor),
                           neg=np.divide(self.neg, divisor), hint=hint)

    def add(self, other: FloatHistogram) -> tuple[FloatHistogram, bool]:
        """``self + other`` and whether mismatched custom bounds had to be reconciled (to their common bounds).

        The result's counter-reset hint is Prometheus': equal hints stay, a gauge on either side makes a gauge,
        anything else (unknown on a side, or reset against not-reset: see :func:`hints_collide`) is unknown.
        """
        return _combine(self, other, 1.0)

    def sub(self, other: FloatHistogram) -> tuple[FloatHistogram, bool]:
        """``self - other``, as :meth:`add` (the ``-`` operator marks its result a gauge itself)."""
        return _combine(self, other, -1.0)

    def kahan_add(self, comp: FloatHistogram | None,
                  other: FloatHistogram) -> tuple[FloatHistogram, FloatHistogram, bool]:
        """``self + other`` with Kahan-Neumaier compensation (as Prometheus sums histograms in ``sum`` and
        ``avg``): ``comp`` (None at first) is the running compensation, returned updated beside the sum and
        whether custom bounds were reconciled. The final value is ``sum.add(comp)``."""
        if self.is_custom != other.is_custom:
            raise IncompatibleSchemaError("cannot apply this operation on histograms with a mix of exponential and "
                                          "custom bucket schemas")
        acc, b = self, other
        c = comp if comp is not None else replace(self, zero_count=0.0, count=0.0, sum=0.0, pos_idx=_NO_INDEX,
                                                  pos=_NO_COUNT, neg_idx=_NO_INDEX, neg=_NO_COUNT)
        reconciled = False
        if acc.is_custom:
            if not np.array_equal(acc.custom_values, b.custom_values):
                common = np.intersect1d(acc.custom_values, b.custom_values)
                acc, c, b = (_custom_to_common(h, common) for h in (acc, c, b))
                reconciled = True
        else:
            acc, b = _reconcile_zero(acc, b)
            c = _absorb_into_zero(c, acc.zero_threshold)
            target = min(acc.schema, b.schema)
            acc, c, b = (h.reduce_resolution(target) for h in (acc, c, b))
        hint = combined_hint(self.hint, other.hint)
        scalars = _neumaier(np.array([acc.zero_count, acc.count, acc.sum]), np.array([b.zero_count, b.count, b.sum]),
                            np.array([c.zero_count, c.count, c.sum]))
        pos_idx, pos, pos_c = _neumaier_buckets(acc.pos_idx, acc.pos, b.pos_idx, b.pos, c.pos_idx, c.pos)
        neg_idx, neg, neg_c = _neumaier_buckets(acc.neg_idx, acc.neg, b.neg_idx, b.neg, c.neg_idx, c.neg)
        (zc, count, total), (zc_c, count_c, total_c) = scalars[0].tolist(), scalars[1].tolist()
        out = replace(acc, zero_count=zc, count=count, sum=total, pos_idx=pos_idx, pos=pos, neg_idx=neg_idx,
                      neg=neg, hint=hint)
        out_c = replace(acc, zero_count=zc_c, count=count_c, sum=total_c, pos_idx=pos_idx, pos=pos_c,
                        neg_idx=neg_idx, neg=neg_c, hint=hint)
        return out, out_c, reconciled

    def equals(self, other: FloatHistogram) -> bool:
        """Prometheus' ``Equals``: the same layout (explicit empty buckets included) and bit-identical counts."""
        if self.schema != other.schema or not _same_bits(self.count, other.count) or \
                not _same_bits(self.sum, other.sum):
            return False
        if self.is_custom and not np.array_equal(self.custom_values, other.custom_values):
            return False
        if self.zero_threshold != other.zero_threshold or not _same_bits(self.zero_count, other.zero_count):
            return False
        return _same_buckets(self.neg_idx, self.neg, other.neg_idx, other.neg) and \
            _same_buckets(self.pos_idx, self.pos, other.pos_idx, other.pos)

    def trim(self, threshold: float, *, upper: bool) -> FloatHistogram:
        """``h </ threshold`` (``upper``: observations above it removed) or ``h >/ threshold`` (those below it).

        A bucket the threshold cuts keeps the interpolated share of its count (log-linearly in exponential
        buckets, linearly in custom buckets and the zero bucket, which leans to the side that has buckets). If
        anything goes, the sum is re-estimated from what stays, each part at its midpoint."""
        if threshold == (math.inf if upper else -math.inf):
            return self
        if threshold == (-math.inf if upper else math.inf):
            return replace(self, zero_count=0.0, count=0.0, sum=0.0, pos_idx=_NO_INDEX, pos=_NO_COUNT,
                           neg_idx=_NO_INDEX, neg=_NO_COUNT)
        trim = _Trim(threshold, upper, self.is_custom)
        pos = np.array([trim.bucket(self.lower(i), self.upper(i), c, True)
                        for i, c in zip(self.pos_idx.tolist(), self.pos.tolist(), strict=True)], np.float64)
        neg = np.array([trim.bucket(-self.upper(i), -self.lower(i), c, False)
                        for i, c in zip(self.neg_idx.tolist(), self.neg.tolist(), strict=True)], np.float64)
        zero_count = trim.zero_bucket(*self._zero_span(), self.zero_count)
        if not trim.removed:
            return self
        return replace(self, pos=pos.reshape(-1), neg=neg.reshape(-1), zero_count=zero_count, count=trim.count,
                       sum=trim.sum).compact()

    def _zero_span(self) -> tuple[float, float]:
        """The zero bucket's range for trimming: the half towards the populated buckets if only one side has any."""
        has_pos, has_neg = bool((self.pos > 0).any()), bool((self.neg > 0).any())
        if has_pos and not has_neg:
            return 0.0, self.zero_threshold
        if has_neg and not has_pos:
            return -self.zero_threshold, 0.0
        return -self.zero_threshold, self.zero_threshold

    def align(self, other: FloatHistogram) -> tuple[FloatHistogram, FloatHistogram, bool]:
        """Both histograms on one bucket layout (the lower schema and the wider zero bucket, or the custom bounds
        they share) as ``add`` sees them, and whether mismatched custom bounds had to be reconciled."""
        return _align(self, other)

    def reduce_resolution(self, schema: int) -> FloatHistogram:
        """The histogram at a lower exponential resolution (buckets merged: H1.3's index mapping)."""
        if schema >= self.schema or self.is_custom:
            return self
        delta = self.schema - schema
        pos_idx, pos = _merge_indices(((self.pos_idx - 1) >> delta) + 1, self.pos)
        neg_idx, neg = _merge_indices(((self.neg_idx - 1) >> delta) + 1, self.neg)
        return replace(self, schema=schema, pos_idx=pos_idx, pos=pos, neg_idx=neg_idx, neg=neg)

    def detect_reset(self, previous: FloatHistogram) -> bool:
        """Whether ``self`` follows a counter reset after ``previous`` (Prometheus' ``DetectReset``): a reset or
        not-reset hint decides; otherwise (unknown, and gauge too, as Prometheus treats a gauge given to a counter
        function) a decrease of the count, the zero bucket or any bucket, or a schema/zero-width change that
        cannot be a continuation."""
        if self.hint == HINT_RESET:
            return True
        if self.hint == HINT_NOT_RESET:
            return False
        if self.is_custom != previous.is_custom:
            return True
        if self.count < previous.count:
            return True
        if self.is_custom and not np.array_equal(self.custom_values, previous.custom_values):
            # Mismatched bounds: a reset when some bucket decreased, both seen on the bounds they share.
            common = np.intersect1d(self.custom_values, previous.custom_values)
            now, before = _custom_to_common(self, common), _custom_to_common(previous, common)
            return _any_decrease(before.pos_idx, before.pos, now.pos_idx, now.pos)
        if self.schema > previous.schema:
            return True
        if self.zero_threshold < previous.zero_threshold:
            return True
        prev = previous.reduce_resolution(self.schema) if previous.schema > self.schema else previous
        if self.zero_threshold > prev.zero_threshold:
            prev_zero, threshold = _zero_count_for_threshold(prev, self.zero_threshold)
            prev = _trim_zero_buckets(replace(prev, zero_count=prev_zero, zero_threshold=threshold))
            if threshold != self.zero_threshold:
                return True
        if self.zero_count < prev.zero_count:
            return True
        return _any_decrease(prev.pos_idx, prev.pos, self.pos_idx, self.pos) or \
            _any_decrease(prev.neg_idx, prev.neg, self.neg_idx, self.neg)

    # -- conversions -------------------------------------------------------------------------

    def to_sample(self, t: int, *, stale: bool = False) -> HistogramSample:
        """The storage form of this histogram at ``t`` (spans rebuilt from the indices)."""
        return HistogramSample(
            t=t, count=self.count, zero_count=self.zero_count, sum=self.sum, schema=self.schema,
            zero_threshold=self.zero_threshold, positive_spans=spans_of(self.pos_idx),
            positive_buckets=tuple(self.pos.tolist()), negative_spans=spans_of(self.neg_idx),
            negative_buckets=tuple(self.neg.tolist()), hint=self.hint,
            custom_values=tuple(self.custom_values.tolist()), stale=stale,
        )

    def go_string(self) -> str:
        """Prometheus' ``String()`` (``count_values`` labels): count, sum, then the populated buckets from the
        lowest up, each as an interval with its count."""
        parts = [f"count:{format_g(self.count)}", f"sum:{format_g(self.sum)}"]
        for i, c in reversed(list(zip(self.neg_idx.tolist(), self.neg.tolist(), strict=True))):
            if c != 0:
                parts.append(_interval(-self.upper(i), -self.lower(i), c))
        if self.zero_count != 0:
            parts.append(f"[{format_g(-self.zero_threshold)},{format_g(self.zero_threshold)}]:"
                         f"{format_g(self.zero_count)}")
        for i, c in zip(self.pos_idx.tolist(), self.pos.tolist(), strict=True):
            if c != 0:
                parts.append(_interval(self.lower(i), self.upper(i), c))
        return "{" + ", ".join(parts) + "}"

    def test_expression(self) -> str:
        """The promqltest ``{{…}}`` form (for messages)."""
        h = self.compact()
        parts = []
        if h.schema:
            parts.append(f"schema:{h.schema}")
        parts += [f"count:{_g(h.count)}", f"sum:{_g(h.sum)}"]
        if h.zero_count:
            parts.append(f"z_bucket:{_g(h.zero_count)}")
        if h.zero_threshold:
            parts.append(f"z_bucket_w:{_g(h.zero_threshold)}")
        if h.is_custom:
            parts.append("custom_values:[" + " ".join(_g(v) for v in h.custom_values.tolist()) + "]")
        for name, idx, counts in (("", h.pos_idx, h.pos), ("n_", h.neg_idx, h.neg)):
            if idx.shape[0]:
                parts.append(f"{name}buckets:{_bucket_map(idx, counts)}")
        hint = {HINT_RESET: "reset", HINT_NOT_RESET: "not_reset", HINT_GAUGE: "gauge"}.get(self.hint)
        if hint:
            parts.append(f"counter_reset_hint:{hint}")
        return "{{" + " ".join(parts) + "}}"


class _Trim:
    """The running state of :meth:`FloatHistogram.trim`: counts kept, the sum of what is kept, whether any
    count went."""

    def __init__(self, threshold: float, upper: bool, custom: bool) -> None:
        self.threshold, self.upper, self.custom = threshold, upper, custom
        self.count = 0.0
        self.sum = 0.0
        self.removed = False

    def bucket(self, lower: float, upper: float, count: float, positive: bool) -> float:
        """The count bucket ``(lower, upper]`` keeps."""
        if lower == -math.inf or upper == math.inf:
            kept, midpoint = self._infinite(lower, upper, count)
        else:
            kept, midpoint = self._finite(lower, upper, count, positive)
        return self._keep(count, kept, midpoint)

    def zero_bucket(self, lower: float, upper: float, count: float) -> float:
        if count == 0:
            return count
        lo, hi = (lower, min(upper, self.threshold)) if self.upper else (max(lower, self.threshold), upper)
        if hi <= lo:
            return self._keep(count, 0.0, 0.0)
        kept = count if hi - lo == upper - lower else count * (hi - lo) / (upper - lower)
        return self._keep(count, kept, (lo + hi) / 2)

    def _keep(self, count: float, kept: float, midpoint: float) -> float:
        if kept != count:
            self.removed = True
        if kept != 0:
            self.count += kept
            self.sum += kept * midpoint
        return kept

    def _finite(self, lower: float, upper: float, count: float, positive: bool) -> tuple[float, float]:
        """Kept count and the midpoint of the kept part of a finite bucket."""
        rhs = self.threshold
        lo, hi = (lower, min(upper, rhs)) if self.upper else (max(lower, rhs), upper)
        if hi <= lo:
            return 0.0, 0.0
        if self.custom:
            share = (hi - lo) / (upper - lower)
            return (count if share == 1 else count * share), (lo + hi) / 2
        log_lo, log_hi = math.log2(abs(lo)), math.log2(abs(hi))
        share = abs(log_hi - log_lo) / abs(math.log2(abs(upper)) - math.log2(abs(lower)))
        midpoint = math.sqrt(abs(lo) * abs(hi))
        return (count if share == 1 else count * share), (midpoint if positive else -midpoint)

    def _infinite(self, lower: float, upper: float, count: float) -> tuple[float, float]:
        """Custom buckets reaching to an infinity: ``(-Inf, u]`` counts as ``(0, u]`` when ``u`` is positive,
        otherwise it stays whole below the threshold (at the threshold or ``u``); ``(l, +Inf]`` stays whole above
        the threshold (at the threshold or ``l``) and goes whole when cut from above."""
        rhs = self.threshold
        if lower == -math.inf:
            if self.upper:
                if rhs >= upper:
                    return count, (upper / 2 if upper > 0 else upper)
                if upper <= 0:
                    return count, rhs
                return (count * rhs / upper, rhs / 2) if rhs > 0 else (0.0, 0.0)
            if 0 <= rhs < upper < math.inf:
                return count * (upper - rhs) / upper, (rhs + upper) / 2
            return 0.0, 0.0
        if self.upper:
            return 0.0, 0.0
        return count, max(lower, rhs)


def _g(x: float) -> str:
    return repr(x) if not float(x).is_integer() else str(int(x)) if math.isfinite(x) else str(x)


def _bucket_map(idx: _I64, counts: _F64) -> str:
    return "[" + " ".join(f"{i}:{_g(c)}" for i, c in zip(idx.tolist(), counts.tolist(), strict=True)) + "]"


def _interval(lower: float, upper: float, count: float) -> str:
    """A bucket as Prometheus prints it: a bound is inclusive on the side away from zero."""
    left = "[" if lower < 0 else "("
    right = "]" if upper > 0 else ")"
    return f"{left}{format_g(lower)},{format_g(upper)}{right}:{format_g(count)}"


def _same_bits(a: float, b: float) -> bool:
    return bool(np.float64(a).view(np.uint64) == np.float64(b).view(np.uint64))


def _same_buckets(a_idx: _I64, a: _F64, b_idx: _I64, b: _F64) -> bool:
    return np.array_equal(a_idx, b_idx) and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def hints_collide(a: FloatHistogram, b: FloatHistogram) -> bool:
    """Whether adding ``a`` and ``b`` meets Prometheus' counter-reset collision: one says reset, the other not."""
    return {a.hint, b.hint} == {HINT_RESET, HINT_NOT_RESET}


def combined_hint(a: int, b: int) -> int:
    """The counter-reset hint of a sum or difference of histograms with hints ``a`` and ``b``."""
    if a == b:
        return a
    if HINT_GAUGE in (a, b):
        return HINT_GAUGE
    return HINT_UNKNOWN


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def spans_of(idx: _I64) -> tuple[tuple[int, int], ...]:
    """Spans ``(offset, length)`` of ascending bucket indices (H1.3)."""
    if idx.shape[0] == 0:
        return ()
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [idx.shape[0]]])
    first = idx[starts]
    prev_end = np.concatenate([[0], idx[ends[:-1] - 1] + 1])
    return tuple(zip((first - prev_end).tolist(), (ends - starts).tolist(), strict=True))


def _merge_indices(idx: _I64, counts: _F64) -> tuple[_I64, _F64]:
    """Counts of equal indices added together, indices ascending."""
    if idx.shape[0] == 0:
        return _NO_INDEX, _NO_COUNT
    uniq, inverse = np.unique(idx, return_inverse=True)
    out = np.zeros(uniq.shape[0], np.float64)
    np.add.at(out, inverse.reshape(-1), counts)
    return uniq.astype(np.int64), out


def _same_index(a: _I64, b: _I64) -> bool:
    """Whether two bucket-index arrays are the same (cheap: samples of one chunk share their arrays)."""
    return a is b or np.array_equal(a, b)


def _any_decrease(prev_idx: _I64, prev: _F64, cur_idx: _I64, cur: _F64) -> bool:
    """Whether some bucket of ``prev`` holds more than the same bucket of ``cur`` (missing buckets are 0)."""
    if prev_idx.shape[0] == 0:
        return False
    if _same_index(prev_idx, cur_idx):
        return bool(np.any(cur < prev))
    pos = np.searchsorted(cur_idx, prev_idx)
    pos_c = np.minimum(pos, max(cur_idx.shape[0] - 1, 0))
    present = (pos < cur_idx.shape[0]) & (cur_idx[pos_c] == prev_idx) if cur_idx.shape[0] else \
        np.zeros(prev_idx.shape[0], np.bool_)
    now = np.where(present, cur[pos_c] if cur_idx.shape[0] else 0.0, 0.0)
    return bool(np.any(now < prev))


def _zero_count_for_threshold(h: FloatHistogram, threshold: float) -> tuple[float, float]:
    """The zero count ``h`` has with a zero bucket at least ``threshold`` wide, and the width it ends up with:
    buckets starting inside the zero bucket join it, and a populated bucket sticking out widens it to its upper
    bound (then the check repeats)."""
    while True:
        count = h.zero_count
        widened = threshold
        for idx, counts in ((h.pos_idx, h.pos), (h.neg_idx, h.neg)):
            for i, c in zip(idx.tolist(), counts.tolist(), strict=True):
                if h.lower(i) >= threshold:
                    break
                count += c
                upper = h.upper(i)
                if upper > threshold:
                    if c != 0:
                        widened = max(widened, upper)
                    break
        if widened == threshold:
            return count, threshold
        threshold = widened


def _trim_zero_buckets(h: FloatHistogram) -> FloatHistogram:
    """Without the buckets that lie inside the zero bucket (their counts already moved into it)."""
    def keep(idx: _I64) -> NDArray[np.bool_]:
        return np.array([h.lower(i) >= h.zero_threshold for i in idx.tolist()], np.bool_).reshape(-1)

    kp, kn = keep(h.pos_idx), keep(h.neg_idx)
    return replace(h, pos_idx=h.pos_idx[kp], pos=h.pos[kp], neg_idx=h.neg_idx[kn], neg=h.neg[kn])


def _reconcile_zero(a: FloatHistogram, b: FloatHistogram) -> tuple[FloatHistogram, FloatHistogram]:
    """Both histograms with the same (the wider) zero bucket."""
    while a.zero_threshold != b.zero_threshold:
        if a.zero_threshold > b.zero_threshold:
            zc, zt = _zero_count_for_threshold(b, a.zero_threshold)
            b = _trim_zero_buckets(replace(b, zero_count=zc, zero_threshold=zt))
        if b.zero_threshold > a.zero_threshold:
            zc, zt = _zero_count_for_threshold(a, b.zero_threshold)
            a = _trim_zero_buckets(replace(a, zero_count=zc, zero_threshold=zt))
    return a, b


def _absorb_into_zero(h: FloatHistogram, threshold: float) -> FloatHistogram:
    """``h`` with a zero bucket widened to ``threshold`` (a bucket boundary): the buckets below move into it."""
    if threshold == h.zero_threshold:
        return h
    inside = [c for idx, counts in ((h.pos_idx, h.pos), (h.neg_idx, h.neg))
              for i, c in zip(idx.tolist(), counts.tolist(), strict=True) if h.lower(i) < threshold]
    return _trim_zero_buckets(replace(h, zero_count=h.zero_count + sum(inside), zero_threshold=threshold))


def _neumaier(total: _F64, inc: _F64, comp: _F64) -> tuple[_F64, _F64]:
    """Kahan-Neumaier steps, element by element: the new totals and compensations (reset where a total is
    infinite)."""
    with np.errstate(all="ignore"):
        t = total + inc
        step = np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
        return t, np.where(np.isinf(t), 0.0, comp + step)


def _on(idx: _I64, own_idx: _I64, own: _F64) -> _F64:
    """Counts ``own`` (at ``own_idx``, a subset of ``idx``) spread onto ``idx``, zeros elsewhere."""
    if _same_index(idx, own_idx):
        return own
    out = np.zeros(idx.shape[0], np.float64)
    out[np.searchsorted(idx, own_idx)] = own
    return out


def _neumaier_buckets(a_idx: _I64, a: _F64, b_idx: _I64, b: _F64, c_idx: _I64, c: _F64) -> tuple[_I64, _F64, _F64]:
    if _same_index(a_idx, b_idx) and _same_index(a_idx, c_idx):
        idx = a_idx
    else:
        idx = np.union1d(np.union1d(a_idx, b_idx), c_idx).astype(np.int64)
    total, comp = _neumaier(_on(idx, a_idx, a), _on(idx, b_idx, b), _on(idx, c_idx, c))
    return idx, total, comp


def _custom_to_common(h: FloatHistogram, common: _F64) -> FloatHistogram:
    """A custom-bucket histogram re-bucketed onto ``common``, a subset of its bounds (each bucket joins the
    common bucket its upper bound falls into)."""
    own = h.custom_values
    upper = np.where(h.pos_idx < own.shape[0], own[np.minimum(h.pos_idx, max(own.shape[0] - 1, 0))]
                     if own.shape[0] else np.inf, np.inf)
    target = np.searchsorted(common, upper, side="left").astype(np.int64)
    idx, counts = _merge_indices(target, h.pos)
    return replace(h, custom_values=common, pos_idx=idx, pos=counts)


def _align(a: FloatHistogram, b: FloatHistogram) -> tuple[FloatHistogram, FloatHistogram, bool]:
    if a.is_custom != b.is_custom:
        raise IncompatibleSchemaError("cannot apply this operation on histograms with a mix of exponential and "
                                      "custom bucket schemas")
    reconciled = False
    if a.is_custom:
        if not np.array_equal(a.custom_values, b.custom_values):
            common = np.intersect1d(a.custom_values, b.custom_values)
            a, b = _custom_to_common(a, common), _custom_to_common(b, common)
            reconciled = True
    else:
        a, b = _reconcile_zero(a, b)
        target = min(a.schema, b.schema)
        a, b = a.reduce_resolution(target), b.reduce_resolution(target)
    return a, b, reconciled


def _add_buckets(a_idx: _I64, a: _F64, b_idx: _I64, b: _F64, sign: float) -> tuple[_I64, _F64]:
    if _same_index(a_idx, b_idx):
        return a_idx, a + sign * b
    return _merge_indices(np.concatenate([a_idx, b_idx]), np.concatenate([a, sign * b]))


def _combine(a: FloatHistogram, b: FloatHistogram, sign: float) -> tuple[FloatHistogram, bool]:
    a, b, reconciled = _align(a, b)
    pos_idx, pos = _add_buckets(a.pos_idx, a.pos, b.pos_idx, b.pos, sign)
    neg_idx, neg = _add_buckets(a.neg_idx, a.neg, b.neg_idx, b.neg, sign)
    out = replace(a, zero_count=a.zero_count + sign * b.zero_count, count=a.count + sign * b.count,
                  sum=a.sum + sign * b.sum, pos_idx=pos_idx, pos=pos, neg_idx=neg_idx, neg=neg,
                  hint=combined_hint(a.hint, b.hint))
    return out, reconciled


# A layout as float histograms use it: schema, zero threshold, positive and negative indices, custom bounds.
_Layout = tuple[int, float, _I64, _I64, _F64]


def from_batch(batch: HistogramBatch, s: int, layouts: dict[int, _Layout] | None = None) -> FloatHistogram:
    """Sample ``s`` of a decoded batch (integer or float) as a float histogram. ``layouts`` caches the batch's
    layouts across calls (the samples of one chunk share theirs, index arrays included)."""
    layout = int(batch.layout[s])
    known = None if layouts is None else layouts.get(layout)
    if known is None:
        known = _layout(batch, layout)
        if layouts is not None:
            layouts[layout] = known
    schema, zero_threshold, pos_idx, neg_idx, custom = known
    pos, neg = batch.sample_buckets(s)
    return FloatHistogram(
        schema=schema, zero_threshold=zero_threshold, zero_count=float(batch.zero_count[s]),
        count=float(batch.count[s]), sum=float(batch.sum[s]), pos_idx=pos_idx, pos=pos.astype(np.float64),
        neg_idx=neg_idx, neg=neg.astype(np.float64), custom_values=custom, hint=int(batch.hint[s]),
    )


def _layout(batch: HistogramBatch, layout: int) -> _Layout:
    lay = batch.layouts
    schema = int(lay.schema[layout])
    pos_idx, neg_idx = lay.indices(layout)
    custom = lay.custom(layout).astype(np.float64) if schema == CUSTOM_BUCKETS_SCHEMA else _NO_COUNT
    return (schema, float(lay.zero_threshold[layout]), np.asarray(pos_idx, np.int64), np.asarray(neg_idx, np.int64),
            custom)
