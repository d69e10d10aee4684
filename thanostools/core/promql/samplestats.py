"""Prometheus's query statistics: samples read per step, the peak of samples held, and timings.

Prometheus counts, per evaluation step, the samples its selectors read (``totalQueryableSamples``): an instant
selector one per series that has a sample at that step, a range selector (or a subquery under a function) the
samples in each window. A native histogram counts as its size in 16-byte units, as Prometheus sizes it. What an
inner subquery evaluation reads is not counted (the windows over its result are), except for a subquery that is
the whole query, which counts its inner total at the query's last step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.promql.value import RangeVector, Scalar, Value, Vector

_FLOAT_HISTOGRAM_STRUCT_BYTES = 168  # Prometheus's FloatHistogram with its slice headers, plus the pointer
_SAMPLE_BYTES = 16  # one float sample (timestamp and value)


@dataclass
class QueryTimings:
    """Seconds spent, with Prometheus's meaning of each timer."""

    eval_total: float = 0.0  # preparation, inner evaluation and result sorting
    result_sort: float = 0.0
    query_preparation: float = 0.0  # opening the selectors' series sets
    inner_eval: float = 0.0
    exec_queue: float = 0.0  # waiting for a query slot
    exec_total: float = 0.0  # everything from parsing on, waiting included


class StepCounter:
    """Samples read, in total and per query step (not per step for a subquery's inner evaluation: ``steps`` None).

    The per-step array is made at the first count: by then the evaluator has reserved room for the step grid."""

    def __init__(self, steps: int | None) -> None:
        self.total = 0
        self.steps = steps
        self._per_step: np.ndarray | None = None

    def child(self) -> StepCounter:
        return StepCounter(None)

    def per_step(self) -> np.ndarray | None:
        if self._per_step is None and self.steps is not None:
            self._per_step = np.zeros(self.steps, np.int64)
        return self._per_step

    def add(self, per_step: np.ndarray) -> None:
        self.total += int(per_step.sum())
        counts = self.per_step()
        if counts is not None:
            counts += per_step

    def add_at_last_step(self, samples: int) -> None:
        self.total += samples
        counts = self.per_step()
        if counts is not None and counts.shape[0]:
            counts[-1] += samples


@dataclass
class SampleStats:
    """What :class:`StepCounter` found for a whole query, with the times of its steps."""

    step_times_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    per_step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    total: int = 0
    peak: int = 0

    def steps(self) -> list[tuple[int, int]]:
        return list(zip(self.step_times_ms.tolist(), self.per_step.tolist(), strict=True))


def histogram_points(h: FloatHistogram, runs: dict[int, int] | None = None) -> int:
    """A native histogram's weight in samples: Prometheus's in-memory size of it, plus a timestamp, over 16 bytes.

    Spans are counted as runs of consecutive bucket indexes (Prometheus keeps the spans the histogram was
    written with, which may also bridge short gaps). ``runs`` caches them per index array (the samples of one
    chunk share theirs)."""
    size = _FLOAT_HISTOGRAM_STRUCT_BYTES + 8 * (_runs(h.pos_idx, runs) + _runs(h.neg_idx, runs) + h.pos.shape[0]
                                                + h.neg.shape[0] + h.custom_values.shape[0])
    return int(size + 8) // _SAMPLE_BYTES


def _runs(idx: np.ndarray, cache: dict[int, int] | None) -> int:
    if idx.shape[0] == 0:
        return 0
    known = None if cache is None else cache.get(id(idx))
    if known is None:
        known = 1 + int(np.count_nonzero(np.diff(idx) != 1))
        if cache is not None:
            cache[id(idx)] = known
    return known


def histogram_weights(cells: np.ndarray) -> np.ndarray:
    """Per cell of an object array: a histogram's weight minus one (so that adding presence counts gives the
    weight), 0 where the cell holds no histogram."""
    out = np.zeros(cells.shape, np.int64)
    flat, weights = cells.reshape(-1), out.reshape(-1)
    runs: dict[int, int] = {}  # the cells keep every array alive while the ids are used
    seen: dict[int, int] = {}
    for i in np.flatnonzero(flat.astype(np.bool_)).tolist():
        h = flat[i]
        w = seen.get(id(h))
        if w is None:
            w = seen[id(h)] = histogram_points(h, runs) - 1
        weights[i] = w
    return out


def vector_points(v: Vector) -> np.ndarray:
    """Per step: the samples a vector holds (histograms by weight)."""
    counts: np.ndarray = np.count_nonzero(v.present, axis=0).astype(np.int64)
    if v.hist is not None and v.hist.size:
        counts += np.where(v.present, histogram_weights(v.hist), 0).sum(axis=0)
    return counts


def window_points(rv: RangeVector) -> np.ndarray:
    """Per series and step: the samples in that window (histograms by weight)."""
    sizes: np.ndarray = (rv.hi - rv.lo).astype(np.int64)
    if rv.h is not None and rv.h.shape[0]:
        cum = np.concatenate([[0], np.cumsum(histogram_weights(rv.h))]).astype(np.int64)
        sizes += cum[rv.hi] - cum[rv.lo]
    return sizes


def value_points(value: Value) -> int:
    """The samples Prometheus would hold for this value (a scalar holds one per step, a string none)."""
    if isinstance(value, Vector):
        return int(vector_points(value).sum())
    if isinstance(value, RangeVector):
        return int(window_points(value).sum()) if len(value) else 0
    if isinstance(value, Scalar):
        return int(value.values.shape[0])
    return 0
