"""An in-memory :class:`Querier` (tests, the conformance runner, small tools)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.matchers import Matcher, MatchType, matches_all
from thanostools.core.series import (
    DEFAULT_BATCH_SAMPLES,
    HistogramColumns,
    LabelResult,
    Querier,
    SampleBatch,
    SelectHints,
    SeriesStream,
)


class MemoryQuerier(Querier):
    """Series kept sorted by labels, each with sorted timestamps and raw float bits.

    ``hints`` records the :class:`SelectHints` of every ``select`` call (useful in tests). ``hists`` gives, per
    series, the histogram columns of its samples (None: all floats), as in :class:`SampleBatch`.
    """

    def __init__(self, labels: list[Labels], ts: list[np.ndarray], vs: list[np.ndarray],
                 hists: list[HistogramColumns | None] | None = None) -> None:
        order = sorted(range(len(labels)), key=lambda i: labels[i])
        self._labels = [labels[i] for i in order]
        self._t = [np.ascontiguousarray(ts[i], np.int64) for i in order]
        self._v = [np.ascontiguousarray(vs[i], np.uint64) for i in order]
        self._hist = [None if hists is None else hists[i] for i in order]
        self._by_name: dict[str, list[int]] = {}
        for i, lbls in enumerate(self._labels):
            self._by_name.setdefault(get(lbls, METRIC_NAME), []).append(i)
        self.hints: list[SelectHints | None] = []

    @classmethod
    def from_series(cls, series: Iterable[tuple[Labels, np.ndarray, np.ndarray]]) -> MemoryQuerier:
        """Build from ``(labels, t int64, v uint64 bits)``; samples are sorted, duplicate timestamps
        keep the last value."""
        merged: dict[Labels, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for labels, t, v in series:
            ts, vs = merged.setdefault(labels, ([], []))
            ts.append(np.asarray(t, np.int64))
            vs.append(np.asarray(v).view(np.uint64) if np.asarray(v).dtype == np.float64
                      else np.asarray(v, np.uint64))
        out_labels: list[Labels] = []
        out_t: list[np.ndarray] = []
        out_v: list[np.ndarray] = []
        for labels, (ts, vs) in merged.items():
            t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
            v = np.concatenate(vs) if vs else np.zeros(0, np.uint64)
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            if t.size > 1:
                last = np.concatenate([t[1:] != t[:-1], [True]])
                t, v = t[last], v[last]
            out_labels.append(labels)
            out_t.append(t)
            out_v.append(v)
        return cls(out_labels, out_t, out_v)

    def _candidates(self, matchers: Sequence[Matcher]) -> list[int]:
        for m in matchers:
            if m.name == METRIC_NAME and m.type is MatchType.EQ:
                return self._by_name.get(m.value, [])
        return list(range(len(self._labels)))

    def _matching(self, matchers: Sequence[Matcher]) -> list[int]:
        return [i for i in self._candidates(matchers) if matches_all(matchers, self._labels[i])]

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        self.hints.append(hints)
        labels: list[Labels] = []
        ts: list[np.ndarray] = []
        vs: list[np.ndarray] = []
        hist_parts: list[tuple[HistogramColumns | None, int]] = []
        for i in self._matching(matchers):
            t = self._t[i]
            a, b = int(np.searchsorted(t, mint, "left")), int(np.searchsorted(t, maxt, "right"))
            if b > a:
                labels.append(self._labels[i])
                ts.append(t[a:b])
                vs.append(self._v[i][a:b])
                cols = self._hist[i]
                hist_parts.append((None if cols is None else cols.take(slice(a, b)), b - a))
        sizes = np.fromiter((x.shape[0] for x in ts), np.int64, len(ts))
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        hist = HistogramColumns.concat(hist_parts) if any(c is not None for c, _ in hist_parts) else None
        batch = SampleBatch(labels, np.full(len(labels), -1, np.int64), offsets,
                            np.concatenate(ts) if ts else np.zeros(0, np.int64),
                            np.concatenate(vs) if vs else np.zeros(0, np.uint64), hist=hist)
        return SeriesStream.whole(batch, batch_samples=batch_samples)

    def _in_range(self, i: int, mint: int, maxt: int) -> bool:
        t = self._t[i]
        return bool(np.searchsorted(t, maxt, "right") > np.searchsorted(t, mint, "left"))

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        names: set[str] = set()
        for i in self._matching(matchers):
            if self._in_range(i, mint, maxt):
                names.update(n for n, _ in self._labels[i])
        return LabelResult(sorted(names))

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        values: set[str] = set()
        for i in self._matching(matchers):
            if self._in_range(i, mint, maxt):
                value = get(self._labels[i], name)
                if value:
                    values.add(value)
        return LabelResult(sorted(values))
