"""Writing series that span several aligned block ranges: one BlockWriter per range, fed in step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from thanostools.core.labels import Labels
from thanostools.core.series import SampleBatch
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.tsdb.writer import BlockWriter

DEFAULT_BLOCK_DURATION = 2 * 3600 * 1000


class BlockSetWriter:
    """Splits label-sorted series at multiples of ``block_duration`` (from the epoch) into blocks.

    Every block receives its part of each series in the same (sorted) order, so all writers stream.
    """

    def __init__(self, parent_dir: str, *, block_duration: int = DEFAULT_BLOCK_DURATION,
                 external_labels: Mapping[str, str] | None = None, source: str = "bucket.upload",
                 thanos: bool = True, aligned_ranges: bool = False) -> None:
        if block_duration <= 0:
            raise ValueError("block duration must be positive")
        self.parent_dir = parent_dir
        self.block_duration = block_duration
        self._writer_args = dict(external_labels=dict(external_labels or {}), source=source, thanos=thanos,
                                 chunk_range=2 * block_duration)
        self._writers: dict[int, BlockWriter] = {}
        # Aligned: block ranges are whole windows, like blocks cut from a Prometheus head; otherwise they
        # span first sample to last sample + 1, like promtool's importer.
        self.aligned_ranges = aligned_ranges

    def _writer(self, window: int) -> BlockWriter:
        w = self._writers.get(window)
        if w is None:
            bounds = {}
            if self.aligned_ranges:
                bounds = {"min_time": window * self.block_duration, "max_time": (window + 1) * self.block_duration}
            w = self._writers[window] = BlockWriter(self.parent_dir, **self._writer_args, **bounds)  # type: ignore[arg-type]
        return w

    def add_batch(self, labels: Sequence[Labels], t: np.ndarray, v: np.ndarray, offsets: np.ndarray) -> None:
        """Add series i = samples ``offsets[i]:offsets[i+1]`` (each sorted by time, series in label order)."""
        if t.shape[0] == 0:
            return
        window = np.floor_divide(t, self.block_duration)
        series = np.repeat(np.arange(len(labels)), np.diff(offsets))
        for w in np.unique(window).tolist():
            pick = np.flatnonzero(window == w)
            counts = np.bincount(series[pick], minlength=len(labels))
            present = np.flatnonzero(counts)
            sub_offsets = np.concatenate([[0], np.cumsum(counts[present])]).astype(np.int64)
            self._writer(int(w)).add_series_batch([labels[i] for i in present.tolist()], t[pick], v[pick],
                                                  sub_offsets)

    def add_sample_batch(self, batch: SampleBatch) -> None:
        """``add_batch`` for a batch whose samples may be native histograms."""
        if batch.t.shape[0] == 0:
            return
        window = np.floor_divide(batch.t, self.block_duration)
        series = np.repeat(np.arange(len(batch)), np.diff(batch.offsets))
        for w in np.unique(window).tolist():
            pick = np.flatnonzero(window == w)
            self._writer(int(w)).add_sample_batch(batch.take(pick, np.bincount(series[pick], minlength=len(batch))))

    def finish(self) -> list[BlockMeta]:
        metas = []
        try:
            for w in sorted(self._writers):
                metas.append(self._writers[w].finish())
        except BaseException:
            self.abort()
            raise
        return metas

    def abort(self) -> None:
        for w in self._writers.values():
            w.abort()
