"""Block reader: meta + index + chunks + tombstones, local (mmap) or remote (ranged reads)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.chunkenc import histogram, xor
from thanostools.core.chunkenc.aggr import Aggr, aggr_spans
from thanostools.core.errors import CorruptBlockError, NotFoundError, UnsupportedError
from thanostools.core.kernels import binary as kb
from thanostools.core.kernels import select as select_kernels
from thanostools.core.matchers import Matcher
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.objstore.cache import RangeCache
from thanostools.core.series import (
    KIND_FLOAT,
    KIND_FLOAT_HISTOGRAM,
    KIND_INT_HISTOGRAM,
    HistogramColumns,
    SampleBatch,
)
from thanostools.core.tsdb.bytesource import BucketSource, ByteSource, MmapSource
from thanostools.core.tsdb.chunks import (
    ENC_AGGR,
    ENC_XOR,
    ENC_XOR2,
    ENCODING_NAMES,
    SEGMENT_HEADER_SIZE,
    ChunkBatch,
    ChunkReader,
    frame_records,
    split_refs,
)
from thanostools.core.tsdb.index import IndexReader, RawSeries, SeriesBatch
from thanostools.core.tsdb.meta import BlockMeta, read_meta_file
from thanostools.core.tsdb.tombstones import Intervals, deleted_mask, parse_tombstones

HISTOGRAM_ENCODINGS = (*histogram.INT_ENCODINGS, *histogram.FLOAT_ENCODINGS)
MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1


class Block:
    """An open block. Readers never modify anything."""

    def __init__(self, meta: BlockMeta, index: IndexReader, chunks: ChunkReader,
                 tombstones: dict[int, Intervals]) -> None:
        self.meta = meta
        self.ulid = meta.ulid
        self.index = index
        self.chunks = chunks
        self.tombstones = tombstones

    @classmethod
    def open_dir(cls, path: str) -> Block:
        path = os.path.normpath(path)
        name = os.path.basename(path)
        meta_path = os.path.join(path, "meta.json")
        if not os.path.exists(meta_path):
            raise NotFoundError(f"block {name}: no meta.json in {path}")
        meta = read_meta_file(meta_path)
        try:
            return cls._open_files(path, meta)
        except CorruptBlockError as exc:
            raise exc.located(block=meta.ulid) from None

    @classmethod
    def _open_files(cls, path: str, meta: BlockMeta) -> Block:
        index_path = os.path.join(path, "index")
        if not os.path.exists(index_path):
            raise CorruptBlockError("index file missing", block=meta.ulid, file="index")
        index = IndexReader(MmapSource(index_path, "index"), block=meta.ulid)
        chunks_dir = os.path.join(path, "chunks")
        if not os.path.isdir(chunks_dir):
            raise CorruptBlockError("chunks directory missing", block=meta.ulid, file="chunks")
        names = segment_files(os.listdir(chunks_dir))
        segs: list[ByteSource] = [MmapSource(os.path.join(chunks_dir, n), f"chunks/{n}") for n in names]
        chunks = ChunkReader(segs, block=meta.ulid, segment_names=names)
        chunks.check_headers()
        stones: dict[int, Intervals] = {}
        tpath = os.path.join(path, "tombstones")
        if os.path.exists(tpath):
            source = MmapSource(tpath, "tombstones")
            stones = parse_tombstones(source.read(0, source.size()), block=meta.ulid)
        return cls(meta, index, chunks, stones)

    # --- selection -------------------------------------------------------------------------------

    def postings(self, matchers: Sequence[Matcher]) -> np.ndarray:
        return self.index.postings_for_matchers(matchers) if matchers else self.index.all_postings()

    def select(
        self,
        matchers: Sequence[Matcher] = (),
        mint: int = MIN_TIME,
        maxt: int = MAX_TIME,
        *,
        aggregate: Aggr = Aggr.COUNT,
        batch_size: int = 20000,
        histograms: bool = False,
    ) -> Iterator[SampleBatch]:
        """Samples of matching series within ``[mint, maxt]``, tombstones applied, in label order.

        For downsampled blocks, ``aggregate`` picks which AggrChunk sub-chunk to decode. With ``histograms``,
        native-histogram chunks are decoded into the batches' histogram part; without, they are refused
        (``UnsupportedError``), for readers that handle floats only.
        """
        refs = self.postings(matchers)
        for i in range(0, refs.shape[0], batch_size):
            sb = self.index.series(refs[i : i + batch_size])
            out = self.samples(sb, mint, maxt, aggregate=aggregate, histograms=histograms)
            if len(out):
                yield out

    def samples(self, sb: SeriesBatch, mint: int, maxt: int, *, aggregate: Aggr = Aggr.COUNT,
                histograms: bool = False) -> SampleBatch:
        counts, t, v, hist = self._row_samples(sb, np.arange(len(sb)), mint, maxt, aggregate, histograms)
        nonempty = np.flatnonzero(counts)
        offsets = np.concatenate([[0], np.cumsum(counts[nonempty])]).astype(np.int64)
        return SampleBatch([sb.labels[i] for i in nonempty.tolist()], sb.refs[nonempty], offsets, t, v, hist=hist)

    def row_samples(self, sb: RawSeries, rows: np.ndarray, mint: int, maxt: int, *, aggregate: Aggr = Aggr.COUNT,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, HistogramColumns | None]:
        """Samples of the series ``rows`` of ``sb`` within ``[mint, maxt]``, tombstones applied, native
        histograms included.

        Returns (sample count per row, t, v, histogram part or None when all are floats) with the rows' samples
        back to back in ``rows`` order.
        """
        return self._row_samples(sb, rows, mint, maxt, aggregate, True)

    def _row_samples(self, sb: RawSeries, rows: np.ndarray, mint: int, maxt: int, aggregate: Aggr,
                     histograms: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, HistogramColumns | None]:
        chunk_idx, chunk_row = _row_chunks(sb, rows, mint, maxt)
        t, v, sizes, hist = self._read_decoded(sb.chunk_ref[chunk_idx], aggregate, histograms)
        sample_row = np.repeat(chunk_row, sizes)
        mask = (t >= mint) & (t <= maxt)
        if self.tombstones:
            mask &= ~self._tombstoned(sb.refs[rows], sample_row, t)
        if not bool(mask.all()):
            t, v, sample_row = t[mask], v[mask], sample_row[mask]
            hist = None if hist is None else hist.take(np.flatnonzero(mask))
        return np.bincount(sample_row, minlength=rows.shape[0]).astype(np.int64), t, v, hist

    def chunk_spans(self, sb: RawSeries, rows: np.ndarray, mint: int, maxt: int) -> ChunkSpans | None:
        """Where the XOR chunks of series ``rows`` overlapping ``[mint, maxt]`` lie in their memory-mapped
        segment (CRCs checked), for decoding in place. None when that does not apply (tombstones, remote or
        several segments, other encodings): use :meth:`row_samples`.
        """
        if self.tombstones:
            return None
        chunk_idx, chunk_row = _row_chunks(sb, rows, mint, maxt)
        located = self.locate_chunks(sb.chunk_ref[chunk_idx])
        if located is None or not bool((located.encodings == ENC_XOR).all()):
            return None
        samples, short = select_kernels.chunk_sample_counts(located.buf, located.starts, located.ends)
        if short >= 0:
            return None  # the decoding reader reports it
        return ChunkSpans(located.buf, located.starts, located.ends, samples, chunk_row)

    def _read_decoded(self, refs: np.ndarray, aggregate: Aggr, histograms: bool,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, HistogramColumns | None]:
        """The chunks ``refs`` decoded, read in place when possible: (t, v, samples per chunk, histogram part)."""
        located = self.locate_chunks(refs)
        batch = located if located is not None else self.chunks.read(refs)
        encs = batch.encodings
        if histograms and encs.size and bool((encs == ENC_AGGR).all()):
            batch = self._aggregate_spans(batch, aggregate)
            encs = batch.encodings
            if bool((~np.isin(encs, xor.FLOAT_ENCODINGS)).any()):
                return self._decode_mixed(batch, refs)
            dec = self._decode_floats(batch, refs)
            return dec.t, dec.v, np.diff(dec.offsets), None
        if histograms and encs.size and not bool((encs == ENC_AGGR).all()) and bool(
                np.isin(encs, HISTOGRAM_ENCODINGS).any()):
            return self._decode_mixed(batch, refs)
        dec = self._decode(batch, refs, aggregate)
        return dec.t, dec.v, np.diff(dec.offsets), None

    def xor2_as_xor(self, batch: ChunkBatch, refs: np.ndarray) -> ChunkBatch:
        """``batch`` (chunks ``refs``) with its XOR2 chunks re-encoded as XOR, one for one (same samples and
        chunk bounds, start timestamps dropped), as a framed batch; ``batch`` itself when it holds none. For
        what leaves us as chunk bytes (written blocks, the StoreAPI): Thanos and Prometheus < 3.11 cannot read
        XOR2."""
        mine = np.flatnonzero(batch.encodings == ENC_XOR2)
        if mine.size == 0:
            return batch
        try:
            dec = xor.decode_batch(batch.buf, batch.starts[mine], batch.ends[mine], batch.encodings[mine])
        except CorruptBlockError as exc:
            raise self.locate_decode_error(exc, batch, refs, mine) from None
        fresh, fresh_offsets = xor.encode_batch(dec.t, dec.v, dec.offsets)
        encodings = batch.encodings.astype(np.int64)
        lengths = batch.ends - batch.starts
        lengths[mine] = np.diff(fresh_offsets)
        encodings[mine] = ENC_XOR
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        payloads = np.empty(int(offsets[-1]), dtype=np.uint8)
        kept = np.flatnonzero(batch.encodings != ENC_XOR2)
        kb.scatter_spans(batch.buf, batch.starts[kept], batch.ends[kept], payloads, offsets[kept])
        kb.scatter_spans(fresh, fresh_offsets[:-1], fresh_offsets[1:], payloads, offsets[mine])
        return frame_records(encodings, payloads, offsets)

    def locate_chunks(self, refs: np.ndarray) -> ChunkBatch | None:
        """The chunk records where they lie, without a copy, when all are in one memory-mapped segment (CRCs
        checked), else None: a framed batch over the whole segment."""
        if refs.size == 0:
            return None
        segs, offsets = split_refs(refs)
        seg = int(segs[0])
        if seg >= len(self.chunks.segments) or not bool((segs == seg).all()):
            return None
        data = self.chunks.segments[seg].array()
        if data is None:
            return None
        if int(offsets.min()) < SEGMENT_HEADER_SIZE or int(offsets.max()) >= data.shape[0]:
            return None  # the copying reader reports the bad reference
        starts, ends, encs, bad, code = kb.locate_chunk_records(data, offsets, True)
        if bad >= 0:
            what = "chunk checksum mismatch" if code == 2 else "chunk record truncated"
            raise CorruptBlockError(what, block=self.ulid, file=f"chunks/{self.chunks.names[seg]}",
                                    offset=int(offsets[bad]))
        return ChunkBatch(data, starts, ends, encs, framed=True)

    def _decode(self, batch: ChunkBatch, refs: np.ndarray, aggregate: Aggr) -> xor.DecodedBatch:
        encs = batch.encodings
        if encs.size and bool((encs == ENC_AGGR).all()):
            batch = self._aggregate_spans(batch, aggregate)
            encs = batch.encodings
        self._require_floats(encs)
        return self._decode_floats(batch, refs)

    def _decode_floats(self, batch: ChunkBatch, refs: np.ndarray) -> xor.DecodedBatch:
        """XOR and XOR2 chunks in one decoder call (start timestamps are not kept: no API carries them)."""
        encs = batch.encodings
        try:
            return xor.decode_batch(batch.buf, batch.starts, batch.ends, encs if (encs == ENC_XOR2).any() else None)
        except CorruptBlockError as exc:
            raise self.locate_decode_error(exc, batch, refs, np.arange(encs.shape[0])) from None

    def _aggregate_spans(self, batch: ChunkBatch, aggregate: Aggr) -> ChunkBatch:
        """The sub-chunks of ``aggregate`` in AggrChunks, as a batch of chunks with their own encodings."""
        starts, ends, sub_enc = aggr_spans(batch.buf, batch.starts, batch.ends, aggregate)
        if bool((sub_enc == -1).any()):
            name = aggregate.name.lower()
            _, _, counter_enc = aggr_spans(batch.buf, batch.starts, batch.ends, Aggr.COUNTER)
            if bool(np.isin(counter_enc[sub_enc == -1], HISTOGRAM_ENCODINGS).any()):
                raise UnsupportedError(f"block {self.ulid}: aggregate {name} does not exist for native histograms "
                                       "(their AggrChunks hold count, sum and counter)")
            raise UnsupportedError(f"block {self.ulid}: aggregate {name} is absent from some chunks")
        return ChunkBatch(batch.buf, starts, ends, sub_enc)

    def _decode_mixed(self, batch: ChunkBatch, refs: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, HistogramColumns]:
        """XOR and histogram chunks: one decoding call per kind, samples put back in chunk order."""
        encs = batch.encodings.astype(np.int64)
        is_xor = np.isin(encs, xor.FLOAT_ENCODINGS)
        self._require_floats(encs[~is_xor & ~np.isin(encs, HISTOGRAM_ENCODINGS)])
        floats = self._decode_floats(ChunkBatch(batch.buf, batch.starts[is_xor], batch.ends[is_xor], encs[is_xor]),
                                     refs[is_xor])
        hist = ~is_xor
        try:
            ints, flts, is_float = histogram.decode_by_kind(batch.buf, batch.starts[hist], batch.ends[hist], encs[hist])
        except CorruptBlockError as exc:
            raise self.locate_decode_error(exc, batch, refs, np.flatnonzero(hist)) from None
        sizes = np.zeros(encs.shape[0], np.int64)
        sizes[is_xor] = np.diff(floats.offsets)
        hist_idx = np.flatnonzero(hist)
        sizes[hist_idx[~is_float]] = np.diff(ints.offsets)
        sizes[hist_idx[is_float]] = np.diff(flts.offsets)
        # where each chunk's samples start in the concatenation (XOR samples, integer, float histograms)
        source_start = np.zeros(encs.shape[0], np.int64)
        source_start[is_xor] = floats.offsets[:-1]
        source_start[hist_idx[~is_float]] = ints.offsets[:-1] + len(floats.t)
        source_start[hist_idx[is_float]] = flts.offsets[:-1] + len(floats.t) + len(ints)
        out_start = np.cumsum(sizes) - sizes
        order = np.repeat(source_start - out_start, sizes) + np.arange(int(sizes.sum()))
        n_x, n_i, n_f = len(floats.t), len(ints), len(flts)
        t = np.concatenate([floats.t, ints.t, flts.t])[order]
        v = np.concatenate([floats.v, ints.sum_bits, flts.sum_bits])[order]
        kind = np.concatenate([np.full(n_x, KIND_FLOAT, np.uint8), np.full(n_i, KIND_INT_HISTOGRAM, np.uint8),
                               np.full(n_f, KIND_FLOAT_HISTOGRAM, np.uint8)])[order]
        row = np.concatenate([np.full(n_x, -1, np.int64), np.arange(n_i), np.arange(n_f)])[order]
        return t, v, sizes, HistogramColumns(kind, row, ints, flts)

    def locate_decode_error(self, exc: CorruptBlockError, batch: ChunkBatch, refs: np.ndarray,
                             decoded: np.ndarray) -> CorruptBlockError:
        """The decoder's error (about one of the chunks ``decoded``) located at its chunk record in its segment
        file."""
        at = exc.offset or 0
        inside = np.flatnonzero((batch.starts[decoded] <= at) & (at < batch.ends[decoded]))
        i = int(decoded[inside[0]]) if inside.size else int(decoded[0])
        segs, offsets = split_refs(refs[i : i + 1])
        name = self.chunks.names[int(segs[0])] if int(segs[0]) < len(self.chunks.names) else str(int(segs[0]))
        kind, detail = exc.reason.split(": ", 1) if ": " in exc.reason else ("chunk", exc.reason)
        what = kind.rsplit(" ", 1)[0] if kind.rsplit(" ", 1)[-1].isdigit() else kind
        return CorruptBlockError(f"{what}: {detail}", block=self.ulid, file=f"chunks/{name}", offset=int(offsets[0]))

    def _require_floats(self, encs: np.ndarray) -> None:
        bad = encs[~np.isin(encs, xor.FLOAT_ENCODINGS)]
        if bad.size:
            code = int(bad[0])
            name = ENCODING_NAMES.get(code, "unknown")
            raise UnsupportedError(f"block {self.ulid}: chunk encoding {code} ({name}) is not supported yet")

    def _tombstoned(self, refs: np.ndarray, sample_series: np.ndarray, t: np.ndarray) -> np.ndarray:
        mask = np.zeros(t.shape[0], dtype=bool)
        for i, ref in enumerate(refs.tolist()):
            intervals = self.tombstones.get(ref)
            if not intervals:
                continue
            idx = np.flatnonzero(sample_series == i)
            mask[idx] = deleted_mask(t[idx], intervals)
        return mask


@dataclass(frozen=True)
class ChunkSpans:
    """XOR chunk payloads ``buf[starts[i]:ends[i]]`` with their sample counts and requested row indexes."""

    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    samples: np.ndarray
    row: np.ndarray


def _row_chunks(sb: RawSeries, rows: np.ndarray, mint: int, maxt: int) -> tuple[np.ndarray, np.ndarray]:
    """Indexes of the chunks of series ``rows`` that overlap ``[mint, maxt]``, and the row position of each."""
    first = sb.chunk_offsets[rows]
    nchunks = sb.chunk_offsets[rows + 1] - first
    chunk_row = np.repeat(np.arange(rows.shape[0]), nchunks)
    chunk_idx = np.repeat(first - (np.cumsum(nchunks) - nchunks), nchunks) + np.arange(chunk_row.shape[0])
    keep = (sb.chunk_maxt[chunk_idx] >= mint) & (sb.chunk_mint[chunk_idx] <= maxt)
    return chunk_idx[keep], chunk_row[keep]


def segment_files(names: Sequence[str]) -> list[str]:
    """Segment file names in reference order: names that parse as unsigned integers, sorted numerically."""
    return sorted((n for n in names if n.isdigit()), key=int)


def open_bucket_block(bucket: Bucket, ulid: str, *, meta: BlockMeta | None = None,
                      files: dict[str, int] | None = None, cache: RangeCache | None = None) -> Block:
    """Open a block of a bucket: mmap for local buckets, ranged cached reads for remote ones."""
    local = bucket.local_path(ulid)
    if local is not None:
        return Block.open_dir(local)
    meta = meta or BlockMeta.from_json(bucket.get(f"{ulid}/meta.json"), block=ulid)
    if files is None:
        prefix = f"{ulid}/"
        files = {k[len(prefix):]: s for k, s in bucket.list_prefix(ulid).items() if k.startswith(prefix)}
    if "index" not in files:
        raise CorruptBlockError("index file missing", block=ulid, file="index")
    index = IndexReader(BucketSource(bucket, ulid, "index", files["index"], cache), block=ulid)
    listed = segment_files([k[len("chunks/"):] for k in files if k.startswith("chunks/")])
    names = list(meta.thanos.segment_files) if meta.thanos and meta.thanos.segment_files else listed
    missing = [n for n in names if f"chunks/{n}" not in files]
    if missing:
        raise CorruptBlockError("segment file missing", block=ulid, file=f"chunks/{missing[0]}")
    segs: list[ByteSource] = [BucketSource(bucket, ulid, f"chunks/{n}", files[f"chunks/{n}"], cache) for n in names]
    chunks = ChunkReader(segs, block=ulid, segment_names=names)
    stones: dict[int, Intervals] = {}
    if "tombstones" in files:
        stones = parse_tombstones(bucket.get(f"{ulid}/tombstones"), block=ulid)
    return Block(meta, index, chunks, stones)
