"""Column-oriented PromQL values: every value covers all evaluation steps of a node at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from thanostools.core.labels import Labels

_EMPTY_I64 = np.zeros(0, np.int64)


@dataclass
class Scalar:
    """One float per evaluation step."""

    values: np.ndarray  # float64 (steps,)


@dataclass
class String:
    value: str


@dataclass
class Vector:
    """An instant vector over all steps: row i is series ``labels[i]``.

    ``present[i, k]`` says whether the series has a sample at step k (NaN is a value, not absence).
    ``drop_name[i]`` marks series whose ``__name__`` is removed at the end of the query (Prometheus'
    delayed name removal). ``sample_ts`` is only set by vector selectors (for ``timestamp()``).
    ``hist`` is None unless some cell holds a native histogram: then it is an object matrix like ``values``
    whose cells hold a :class:`~thanostools.core.promql.floathist.FloatHistogram` where the sample is one
    (its ``values`` cell is meaningless) and None where it is a float.
    """

    labels: list[Labels]
    values: np.ndarray  # float64 (n, steps)
    present: np.ndarray  # bool (n, steps)
    drop_name: np.ndarray  # bool (n,)
    sample_ts: np.ndarray | None = None
    hist: np.ndarray | None = None

    @staticmethod
    def empty(steps: int) -> Vector:
        return Vector([], np.zeros((0, steps)), np.zeros((0, steps), np.bool_), np.zeros(0, np.bool_))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])

    def take(self, rows: np.ndarray | list[int]) -> Vector:
        idx = np.asarray(rows, np.int64)
        ts = None if self.sample_ts is None else self.sample_ts[idx]
        hist = None if self.hist is None else self.hist[idx]
        return Vector([self.labels[i] for i in idx], self.values[idx], self.present[idx], self.drop_name[idx], ts,
                      hist)

    @property
    def is_hist(self) -> np.ndarray:
        """Per cell: does it hold a histogram sample (bool, like ``present``)."""
        if self.hist is None:
            return np.zeros(self.present.shape, np.bool_)
        return self.hist.astype(np.bool_)

    def floats_only(self) -> Vector:
        """The vector without its histogram samples (what float-only operations see)."""
        if self.hist is None:
            return self
        return Vector(self.labels, self.values, self.present & ~self.is_hist, self.drop_name, self.sample_ts)

    def nonempty(self) -> Vector:
        """Only the rows that have at least one sample."""
        keep = np.flatnonzero(self.present.any(axis=1))
        return self if keep.size == len(self.labels) else self.take(keep)


@dataclass
class RangeVector:
    """A range vector over all steps: series samples plus a window per (series, step).

    Series i owns ``t/v[offsets[i]:offsets[i+1]]`` (stale markers already removed); its window at
    step k is ``[lo[i, k], hi[i, k])``. ``ref`` holds the window end times ``(at or T) - offset``.
    """

    labels: list[Labels]
    t: np.ndarray  # int64
    v: np.ndarray  # float64
    offsets: np.ndarray  # int64 (n+1,)
    lo: np.ndarray  # int64 (n, steps)
    hi: np.ndarray  # int64 (n, steps)
    ref: np.ndarray  # int64 (steps,)
    eval_ts: np.ndarray  # int64 (steps,)
    range_ms: int
    drop_name: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))
    h: np.ndarray | None = None  # object (samples,): a FloatHistogram where the sample is one, else None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def steps(self) -> int:
        return int(self.ref.shape[0])

    def floats_only(self) -> RangeVector:
        """The range vector without its histogram samples (what float-only functions see)."""
        if self.h is None:
            return self
        keep = ~self.h.astype(np.bool_)
        before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)  # kept samples before each index
        return RangeVector(self.labels, self.t[keep], self.v[keep], before[self.offsets], before[self.lo],
                           before[self.hi], self.ref, self.eval_ts, self.range_ms, self.drop_name)


Value = Scalar | String | Vector | RangeVector


def value_size(v: Value) -> int:
    """Samples a value holds, for the max-samples accounting: values are dense, so a vector holds a
    cell per series and step (present or not) and a range vector its samples plus a window per
    series and step."""
    if isinstance(v, Vector):
        return int(v.values.size)
    if isinstance(v, RangeVector):
        return int(v.t.shape[0]) + int(v.lo.size)
    if isinstance(v, Scalar):
        return int(v.values.shape[0])
    return 0
