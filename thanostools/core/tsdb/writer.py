"""BlockWriter: sorted series in, a complete block directory out (FORMATS.md §12.1).

Streaming: chunks go to segment files as series arrive; only chunk metas and label pairs are kept
until the index is written. The block is built in ``<ULID>.tmp-for-creation`` and renamed into
place only when complete, so a crash never leaves a directory that looks like a block.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.cutting import fixed_size_bounds, head_cut_bounds
from thanostools.core.chunkenc.histogram import encode_batch, head_chunks
from thanostools.core.histograms import gather_ranges, take_samples
from thanostools.core.labels import Labels
from thanostools.core.series import KIND_FLOAT, KIND_FLOAT_HISTOGRAM, KIND_INT_HISTOGRAM, SampleBatch
from thanostools.core.tsdb.chunks import ENC_XOR, ChunkBatch, SegmentWriter, frame_records, record_bounds
from thanostools.core.tsdb.index_writer import IndexBuilder
from thanostools.core.tsdb.labelkeys import LabelKeys
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.tsdb.tombstones import EMPTY_TOMBSTONES
from thanostools.core.ulid import new_ulid

TMP_SUFFIX = ".tmp-for-creation"


class BlockWriter:
    """Writes one block. Series must be added in strictly increasing label-set order."""

    def __init__(
        self,
        parent_dir: str,
        *,
        ulid: str | None = None,
        min_time: int | None = None,
        max_time: int | None = None,
        external_labels: Mapping[str, str] | None = None,
        resolution: int = 0,
        source: str = "",
        level: int = 1,
        sources: Sequence[str] | None = None,
        parents: Sequence[Mapping[str, Any]] | None = None,
        thanos: bool = True,
        chunk_range: int = 2 * 7200000,
        extensions: Any = None,
    ) -> None:
        self.ulid = ulid or new_ulid()
        self.parent_dir = parent_dir
        self.dir = os.path.join(parent_dir, self.ulid)
        self.tmp_dir = self.dir + TMP_SUFFIX
        if os.path.exists(self.dir):
            raise FileExistsError(f"block directory {self.dir} already exists")
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        os.makedirs(self.tmp_dir)
        self._segments = SegmentWriter(os.path.join(self.tmp_dir, "chunks"))
        self._index = IndexBuilder()
        self._last: Labels | None = None
        self._last_key: np.ndarray | None = None
        self.min_time, self.max_time = min_time, max_time
        self._seen_mint: int | None = None
        self._seen_maxt: int | None = None
        self.num_samples = 0
        self.num_chunks = 0
        self.chunk_max_size = 0
        self._meta_args: dict[str, Any] = dict(
            external_labels=dict(external_labels or {}), resolution=resolution, source=source, level=level,
            sources=list(sources) if sources else [self.ulid], parents=list(parents or []), thanos=thanos,
            extensions=extensions,
        )
        self.chunk_range = chunk_range

    # --- adding series ---------------------------------------------------------------------------

    def _check_order(self, labels: Labels) -> None:
        if not labels:
            raise ValueError("series with an empty label set")
        if self._last_key is not None:
            raise ValueError("series given as label strings and as label keys in one block")
        if self._last is not None and labels <= self._last:
            raise ValueError(f"series out of order: {labels} after {self._last}")
        self._last = labels

    def add_chunks(
        self, labels: Labels, encodings: np.ndarray, buf: np.ndarray, offsets: np.ndarray, mint: np.ndarray,
        maxt: np.ndarray, num_samples: int,
    ) -> None:
        """Add one series from already-encoded chunks (``buf[offsets[i]:offsets[i+1]]``)."""
        self.add_chunks_batch([labels], encodings, buf, offsets, mint, maxt,
                              np.array([0, encodings.shape[0]], dtype=np.int64), [num_samples])

    def add_chunks_batch(
        self, labels: Sequence[Labels], encodings: np.ndarray, buf: np.ndarray, offsets: np.ndarray,
        mint: np.ndarray, maxt: np.ndarray, series_chunks: np.ndarray, num_samples: Sequence[int],
    ) -> None:
        """Add many series from encoded chunks in one go: series i owns chunks
        ``series_chunks[i]:series_chunks[i+1]`` (chunk j is ``buf[offsets[j]:offsets[j+1]]``).

        Series without chunks are skipped: a series without chunks is index corruption for Thanos.
        """
        records = frame_records(encodings, buf, offsets)
        bounds = np.asarray(series_chunks, dtype=np.int64)
        keep = [i for i in range(len(labels)) if bounds[i + 1] > bounds[i]]
        for i in keep:
            self._check_order(labels[i])
        if not keep:
            return
        refs = self._segments.write_records(records.buf, record_bounds(records))
        kept_bounds = bounds[[*keep, keep[-1] + 1]] if len(keep) == len(labels) else None
        if kept_bounds is not None:
            self._index.add_batch(labels, mint, maxt, refs, (kept_bounds - kept_bounds[0]).tolist())
        else:
            b = bounds.tolist()
            for i in keep:
                self._index.add(labels[i], mint[b[i] : b[i + 1]], maxt[b[i] : b[i + 1]], refs[b[i] : b[i + 1]])
        self.num_samples += int(sum(num_samples[i] for i in keep))
        self._count_chunks(records, mint, maxt)

    def record_buffer(self, size: int) -> np.ndarray:
        """Scratch space to assemble records for ``add_records_keys`` in; valid until the next-but-one call."""
        return self._segments.scratch(size)

    def add_records_keys(
        self, labels: LabelKeys, records: ChunkBatch, mint: np.ndarray, maxt: np.ndarray, series_chunks: np.ndarray,
        num_samples: int, fill: Callable[[], None] | None = None,
    ) -> None:
        """``add_chunks_batch`` for chunks already framed as records, back to back and in order (copied
        verbatim from a block, or from ``frame_records``): they are written as they are, CRCs included.
        Label sets come as keys (all calls over one symbol table), so no strings are built. Series without
        chunks are skipped; ``num_samples`` counts all the chunks' samples.
        ``fill``: ``records.buf`` is still to be filled by it, on the writer thread (see ``SegmentWriter``)."""
        bounds = np.asarray(series_chunks, dtype=np.int64)
        keep = np.flatnonzero(bounds[1:] > bounds[:-1])
        if keep.size == 0:
            return
        if keep.size != len(labels):
            labels = labels.take(keep)
            bounds = np.append(bounds[keep], bounds[keep[-1] + 1])
        self._check_key_order(labels)
        refs = self._segments.write_records(records.buf, record_bounds(records), fill)
        self._index.add_keys(labels, mint, maxt, refs, bounds - bounds[0])
        self.num_samples += num_samples
        self._count_chunks(records, mint, maxt)

    def _check_key_order(self, labels: LabelKeys) -> None:
        bad = labels.first_out_of_order()
        if bad < 0 and self._last_key is not None and labels.compare(0, self._last_key) <= 0:
            bad = 0
        if bad >= 0:
            raise ValueError(f"series out of order: {labels.labels(bad)}")
        if self._last is not None:
            raise ValueError("series given as label strings and as label keys in one block")
        self._last_key = labels.key(len(labels) - 1).copy()

    def _count_chunks(self, records: ChunkBatch, mint: np.ndarray, maxt: np.ndarray) -> None:
        self.num_chunks += int(records.encodings.shape[0])
        self.chunk_max_size = max(self.chunk_max_size, int((records.ends - records.starts).max()) + 10)
        lo, hi = int(mint.min()), int(maxt.max())
        self._seen_mint = lo if self._seen_mint is None else min(self._seen_mint, lo)
        self._seen_maxt = hi if self._seen_maxt is None else max(self._seen_maxt, hi)

    def add_samples(self, labels: Labels, t: np.ndarray, v: np.ndarray, *, cut: str = "head") -> None:
        """Encode one series' samples (sorted by time) as XOR chunks and add it."""
        self.add_series_batch([labels], t, v, np.array([0, t.shape[0]], dtype=np.int64), cut=cut)

    def add_series_batch(
        self, labels: Sequence[Labels], t: np.ndarray, v: np.ndarray, series_offsets: np.ndarray, *,
        cut: str = "head",
    ) -> None:
        """Encode many series in one kernel call: series i has samples ``series_offsets[i]:series_offsets[i+1]``."""
        t = np.ascontiguousarray(t, dtype=np.int64)
        v = np.ascontiguousarray(v).view(np.uint64)
        bounds_list: list[np.ndarray] = []
        per_series: list[int] = []
        for i in range(len(labels)):
            a, b = int(series_offsets[i]), int(series_offsets[i + 1])
            if b == a:
                per_series.append(0)
                continue
            local = (head_cut_bounds(t[a:b], self.chunk_range) if cut == "head"
                     else fixed_size_bounds(b - a))
            bounds_list.append(local[:-1] + a)
            per_series.append(local.shape[0] - 1)
        if not bounds_list:
            return
        bounds = np.concatenate([*bounds_list, [int(series_offsets[len(labels)])]]).astype(np.int64)
        # Empty series leave no gap in bounds because their range is empty; drop trailing samples of none.
        buf, offsets = xor.encode_batch(t, v, bounds)
        counts = np.array(per_series, dtype=np.int64)
        series_chunks = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        samples = [int(series_offsets[i + 1] - series_offsets[i]) for i in range(len(labels))]
        self.add_chunks_batch(labels, np.full(bounds.shape[0] - 1, ENC_XOR, np.int64), buf, offsets,
                              t[bounds[:-1]], t[bounds[1:] - 1], series_chunks, samples)

    def add_sample_batch(self, batch: SampleBatch, *, cut: str = "head") -> None:
        """Encode a batch of series whose samples may be native histograms (``batch.hist``) and add it.

        Chunks are cut as the Prometheus 2.42 head cuts them: a new chunk at every value-type change, floats by
        :func:`head_cut_bounds`, histograms by ``head_chunks`` (H9.4, with the appender's own cuts and headers);
        one encoding call per value type for the whole batch. Histogram samples need strictly increasing
        timestamps within a series.
        """
        hist = batch.hist
        if hist is None or not bool((hist.kind != KIND_FLOAT).any()):
            self.add_series_batch(batch.labels, batch.t, batch.v, batch.offsets, cut=cut)
            return
        if cut != "head":
            raise ValueError("histogram samples are only cut as the head cuts them (cut='head')")
        t = np.ascontiguousarray(batch.t, dtype=np.int64)
        offsets = np.asarray(batch.offsets, dtype=np.int64)
        run_start = np.zeros(t.shape[0], dtype=bool)
        run_start[offsets[:-1][np.diff(offsets) > 0]] = True
        run_start[1:] |= hist.kind[1:] != hist.kind[:-1]
        parts = [self._float_chunks(t, np.ascontiguousarray(batch.v).view(np.uint64), hist.kind, run_start)]
        for kind, source in ((KIND_INT_HISTOGRAM, hist.ints), (KIND_FLOAT_HISTOGRAM, hist.floats)):
            rows = np.flatnonzero(hist.kind == kind)
            if rows.size:
                chunks = head_chunks(take_samples(source, hist.row[rows]), chunk_range=self.chunk_range,
                                     run_start=run_start[rows])
                buf, offs = encode_batch(chunks, flavor="2.42")
                parts.append(_EncodedRun(chunks.encoding.astype(np.int64), buf, offs, rows[chunks.offsets[:-1]],
                                         rows[chunks.offsets[1:] - 1]))
        self._add_encoded_runs(batch.labels, t, offsets, parts)

    def _float_chunks(self, t: np.ndarray, v: np.ndarray, kind: np.ndarray, run_start: np.ndarray) -> _EncodedRun:
        rows = np.flatnonzero(kind == KIND_FLOAT)
        ft = t[rows]
        firsts = [*np.flatnonzero(run_start[rows]).tolist(), int(rows.shape[0])]
        pieces = [head_cut_bounds(ft[a:b], self.chunk_range)[:-1] + a for a, b in itertools.pairwise(firsts)]
        bounds = np.concatenate([*pieces, [rows.shape[0]]]).astype(np.int64)
        buf, offs = xor.encode_batch(ft, v[rows], bounds)
        return _EncodedRun(np.full(bounds.shape[0] - 1, ENC_XOR, np.int64), buf, offs, rows[bounds[:-1]],
                           rows[bounds[1:] - 1])

    def _add_encoded_runs(self, labels: Sequence[Labels], t: np.ndarray, offsets: np.ndarray,
                          parts: Sequence[_EncodedRun]) -> None:
        """Chunks encoded per value type, put back in time order within their series and added."""
        shift = np.cumsum([0] + [int(p.offsets[-1]) for p in parts])[:-1]
        starts = np.concatenate([p.offsets[:-1] + s for p, s in zip(parts, shift, strict=True)]).astype(np.int64)
        ends = np.concatenate([p.offsets[1:] + s for p, s in zip(parts, shift, strict=True)]).astype(np.int64)
        first = np.concatenate([p.first_row for p in parts]).astype(np.int64)
        order = np.argsort(first, kind="stable")
        starts, ends, first = starts[order], ends[order], first[order]
        last = np.concatenate([p.last_row for p in parts]).astype(np.int64)[order]
        whole = np.concatenate([p.buf[: int(p.offsets[-1])] for p in parts])
        buf = whole[gather_ranges(starts, ends)]
        chunk_offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        series_chunks = np.searchsorted(first, offsets).astype(np.int64)
        self.add_chunks_batch(labels, np.concatenate([p.encodings for p in parts])[order], buf, chunk_offsets,
                              t[first], t[last], series_chunks, np.diff(offsets).tolist())

    # --- finishing -------------------------------------------------------------------------------

    def finish(self) -> BlockMeta:
        """Write index, tombstones and meta.json, then move the block into place."""
        try:
            self._segments.close()
            stats = self._index.write(os.path.join(self.tmp_dir, "index"))
            with open(os.path.join(self.tmp_dir, "tombstones"), "wb") as fh:
                fh.write(EMPTY_TOMBSTONES)
            meta = self._meta(stats.series_max_size)
            _write_atomic(os.path.join(self.tmp_dir, "meta.json"),
                          meta.to_json(style="thanos" if meta.thanos is not None else "prometheus"))
            _fsync_dir(self.tmp_dir)
            os.rename(self.tmp_dir, self.dir)
            _fsync_dir(self.parent_dir)
            return meta
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # a failed write is what brought us here
            self._segments.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _meta(self, series_max_size: int) -> BlockMeta:
        a = self._meta_args
        mint = self.min_time if self.min_time is not None else (self._seen_mint or 0)
        maxt = self.max_time if self.max_time is not None else ((self._seen_maxt or 0) + 1)
        stats = {k: v for k, v in (("numSamples", self.num_samples), ("numSeries", self._index.num_series),
                                   ("numChunks", self.num_chunks)) if v}
        compaction: dict[str, Any] = {"level": a["level"], "sources": sorted(set(a["sources"]))}
        if a["parents"]:
            compaction["parents"] = a["parents"]
        doc: dict[str, Any] = {"ulid": self.ulid, "minTime": mint, "maxTime": maxt, "stats": stats,
                               "compaction": compaction, "version": 1}
        if a["thanos"]:
            index_stats = {k: v for k, v in (("series_max_size", series_max_size),
                                              ("chunk_max_size", self.chunk_max_size)) if v}
            doc["thanos"] = {
                "labels": a["external_labels"] or None,
                "downsample": {"resolution": a["resolution"]},
                "source": a["source"],
                "segment_files": list(self._segments.segment_names),
                "index_stats": index_stats,
            }
            if not doc["thanos"]["segment_files"]:
                del doc["thanos"]["segment_files"]
            if a["extensions"] is not None:
                doc["thanos"]["extensions"] = a["extensions"]
        return BlockMeta.from_json(json.dumps(doc).encode(), block=self.ulid)


@dataclass(frozen=True)
class _EncodedRun:
    """Chunks of one value type: chunk i is ``buf[offsets[i]:offsets[i+1]]``, holding batch sample rows
    ``first_row[i]..last_row[i]``."""

    encodings: np.ndarray
    buf: np.ndarray
    offsets: np.ndarray
    first_row: np.ndarray
    last_row: np.ndarray


def _write_atomic(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
