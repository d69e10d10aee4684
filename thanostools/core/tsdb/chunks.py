"""Chunk segment files (FORMATS.md §3): reading records by ref in batches, and writing segments."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import binary as kb
from thanostools.core.tsdb.bytesource import ByteSource, located_source

SEGMENT_MAGIC = 0x85BD40DD
SEGMENT_HEADER = struct.pack(">IB3x", SEGMENT_MAGIC, 1)
SEGMENT_HEADER_SIZE = 8
MAX_SEGMENT_SIZE = 512 * 1024 * 1024
MAX_RECORD_OVERHEAD = 5 + 1 + 4
SMALL_WRITE = 256 * 1024  # bytes of records written on the caller's thread

ENC_XOR = 1
ENC_HISTOGRAM = 2
ENC_FLOAT_HISTOGRAM = 3
ENC_XOR2 = 4  # read only (HISTOGRAMS.md H11.3): what we write is XOR
ENC_AGGR = 0xFF
ENCODING_NAMES = {1: "XOR", 2: "histogram", 3: "float histogram", 4: "XOR2", 5: "histogram ST",
                  6: "float histogram ST", 0xFF: "aggr"}


def segment_name(index: int) -> str:
    return f"{index + 1:06d}"


def unsigned_ref(ref: int) -> int:
    """A chunk ref as the unsigned 64-bit number it is on disk (we hold refs in int64 arrays)."""
    return int(ref) & 0xFFFF_FFFF_FFFF_FFFF


def ref_segment(ref: int) -> int:
    """The segment index: the ref's upper 32 bits, unsigned."""
    return unsigned_ref(ref) >> 32


def ref_offset(ref: int) -> int:
    return int(ref) & 0xFFFFFFFF


def split_refs(refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segment index (unsigned upper 32 bits) and offset of every ref, as int64 arrays."""
    u = np.ascontiguousarray(refs, dtype=np.int64).view(np.uint64)
    return (u >> np.uint64(32)).astype(np.int64), (u & np.uint64(0xFFFFFFFF)).astype(np.int64)


@dataclass(frozen=True)
class ChunkBatch:
    """Chunk payloads gathered into one buffer, in request order: chunk i is ``buf[starts[i]:ends[i]]``.

    When ``framed``, each payload sits inside its whole record (length, encoding byte, payload, CRC), as
    ``ChunkReader.read(framed=True)`` and ``frame_records`` leave it, so it can be written out verbatim.
    """

    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    encodings: np.ndarray
    framed: bool = False

    def data(self, i: int) -> bytes:
        return self.buf[self.starts[i] : self.ends[i]].tobytes()


@dataclass(frozen=True)
class ChunkHeaders:
    encodings: np.ndarray
    lengths: np.ndarray
    num_samples: np.ndarray


class ChunkReader:
    """Reads chunk records from a block's segment files."""

    def __init__(self, segments: Sequence[ByteSource], *, block: str | None = None,
                 segment_names: Sequence[str] | None = None) -> None:
        self.segments = [located_source(s, block) for s in segments]
        self.block = block
        self.names = list(segment_names) if segment_names else [segment_name(i) for i in range(len(self.segments))]

    def _corrupt(self, seg: int, msg: str, offset: int | None) -> CorruptBlockError:
        name = self.names[seg] if 0 <= seg < len(self.names) else segment_name(seg)
        return CorruptBlockError(msg, block=self.block, file=f"chunks/{name}", offset=offset)

    def _missing_segment(self, seg: int) -> CorruptBlockError:
        return self._corrupt(seg, f"chunk reference into segment {segment_name(seg)}, which does not exist", None)

    def check_headers(self) -> None:
        """Validate magic and version of every segment, as Prometheus does on open."""
        heads = [s.read(0, SEGMENT_HEADER_SIZE) if s.size() >= SEGMENT_HEADER_SIZE else b"" for s in self.segments]
        for i, head in enumerate(heads):
            if len(head) < SEGMENT_HEADER_SIZE:
                raise self._corrupt(i, "segment shorter than its header", 0)
            magic, version = struct.unpack(">IB", head[:5])
            if magic != SEGMENT_MAGIC:
                raise self._corrupt(i, f"bad segment magic 0x{magic:08x}", 0)
            if version != 1:
                raise self._corrupt(i, f"unsupported chunks format version {version}", 4)

    def read(self, refs: np.ndarray, *, check_crc: bool = True, size_hint: int = 16000,
             framed: bool = False) -> ChunkBatch:
        """Gather the records for ``refs`` (any order) into one ChunkBatch in the same order."""
        refs = np.asarray(refs, dtype=np.int64)
        n = refs.shape[0]
        seg_idx, offs = split_refs(refs)
        parts: list[tuple[np.ndarray, ChunkBatch]] = []
        for seg in np.unique(seg_idx).tolist():
            if seg >= len(self.segments):
                raise self._missing_segment(int(seg))
            pick = np.flatnonzero(seg_idx == seg)
            parts.append((pick, self._read_segment(int(seg), offs[pick], check_crc, size_hint, framed)))
        return _scatter(parts, n, framed)

    def headers(self, refs: np.ndarray) -> ChunkHeaders:
        """Encoding, payload size and sample count per chunk, reading only record headers where possible."""
        refs = np.asarray(refs, dtype=np.int64)
        n = refs.shape[0]
        out = ChunkHeaders(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))
        seg_idx, offs = split_refs(refs)
        for seg in np.unique(seg_idx).tolist():
            if seg >= len(self.segments):
                raise self._missing_segment(int(seg))
            pick = np.flatnonzero(seg_idx == seg)
            src = self.segments[seg]
            whole = src.array()
            buf, rel = (whole, offs[pick]) if whole is not None else _fetch_ranges(src, offs[pick], 32)
            encs, lens, samples, bad = kb.chunk_record_headers(buf, rel)
            if bad >= 0:
                raise self._corrupt(int(seg), "chunk record truncated", int(offs[pick][bad]))
            out.encodings[pick], out.lengths[pick], out.num_samples[pick] = encs, lens, samples
        return out

    def _read_segment(self, seg: int, offsets: np.ndarray, check_crc: bool, size_hint: int,
                      framed: bool) -> ChunkBatch:
        src = self.segments[seg]
        if offsets.size and (int(offsets.min()) < SEGMENT_HEADER_SIZE or int(offsets.max()) >= src.size()):
            bad = offsets[(offsets < SEGMENT_HEADER_SIZE) | (offsets >= src.size())][0]
            raise self._corrupt(seg, "chunk reference out of range", int(bad))
        whole = src.array()
        if whole is not None:
            buf, rel = whole, offsets
        else:
            buf, rel = _fetch_ranges(src, offsets, size_hint)
        out, starts, ends, encs, bad, code = kb.gather_chunk_records(buf, rel, check_crc, framed)
        if bad >= 0 and whole is None and code == 1:
            # A record longer than our read-ahead guess: read those records exactly.
            buf, rel = _fetch_exact(src, offsets)
            out, starts, ends, encs, bad, code = kb.gather_chunk_records(buf, rel, check_crc, framed)
        if bad >= 0:
            what = "chunk checksum mismatch" if code == 2 else "chunk record truncated"
            raise self._corrupt(seg, what, int(offsets[bad]))
        return ChunkBatch(out, starts, ends, encs, framed)


def _scatter(parts: list[tuple[np.ndarray, ChunkBatch]], n: int, framed: bool) -> ChunkBatch:
    if len(parts) == 1 and np.array_equal(parts[0][0], np.arange(n)):
        return parts[0][1]
    bufs, starts, ends, encs = [], np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    base = 0
    for pick, b in parts:
        bufs.append(b.buf)
        starts[pick] = b.starts + base
        ends[pick] = b.ends + base
        encs[pick] = b.encodings
        base += b.buf.shape[0]
    buf = np.concatenate(bufs) if bufs else np.zeros(0, np.uint8)
    return ChunkBatch(buf, starts, ends, encs, framed)


def _coalesce(offsets: np.ndarray, size_hint: int, limit: int) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for off in np.unique(offsets).tolist():
        end = min(off + size_hint, limit)
        if ranges and off <= ranges[-1][1] + 4096:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((off, end))
    return ranges


def _stitch(src: ByteSource, ranges: list[tuple[int, int]], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    datas = src.read_ranges([(a, b - a) for a, b in ranges])
    buf = np.concatenate([np.frombuffer(d, np.uint8) for d in datas]) if datas else np.zeros(0, np.uint8)
    starts = np.array([a for a, _ in ranges], dtype=np.int64)
    bases = np.concatenate([[0], np.cumsum([len(d) for d in datas])[:-1]]).astype(np.int64)
    which = np.searchsorted(starts, offsets, side="right") - 1
    return buf, offsets - starts[which] + bases[which]


def _fetch_ranges(src: ByteSource, offsets: np.ndarray, size_hint: int) -> tuple[np.ndarray, np.ndarray]:
    return _stitch(src, _coalesce(offsets, size_hint, src.size()), offsets)


def _fetch_exact(src: ByteSource, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = src.size()
    heads = src.read_ranges([(o, min(MAX_RECORD_OVERHEAD, size - o)) for o in offsets.tolist()])
    ranges = []
    for off, head in zip(offsets.tolist(), heads, strict=True):
        length, pos = kb.uvarint(np.frombuffer(head, np.uint8), 0, len(head))
        end = off + pos + 1 + length + 4 if pos >= 0 else off + len(head)
        ranges.append((off, min(end, size)))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(set(ranges)):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return _stitch(src, merged, offsets)


class SegmentWriter:
    """Appends chunk records to ``chunks/000001…``, cutting a new file before 512 MiB.

    Writes run on a background thread, one batch at a time, so the caller prepares the next batch while the
    last one is written (and, with ``fill``, even assembled); an error surfaces at the next write or at close.
    """

    def __init__(self, chunks_dir: str, max_segment_size: int = MAX_SEGMENT_SIZE) -> None:
        os.makedirs(chunks_dir, exist_ok=True)
        self.dir = chunks_dir
        self.max_size = max_segment_size
        self.segment_names: list[str] = []
        self._out: _Segment | None = None
        self._opened: list[_Segment] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-writer")
        self._pending: Future[None] | None = None
        self._pending_buf: np.ndarray | None = None
        self._scratch = [np.zeros(0, np.uint8), np.zeros(0, np.uint8)]
        self._turn = 0

    def scratch(self, size: int) -> np.ndarray:
        """A buffer of ``size`` bytes to assemble records in and pass to ``write_records``.

        Two buffers are reused in turn (fresh memory costs a page fault per 4 KiB, which dominates a copy),
        so a buffer is valid until the next-but-one call; it is never one a write is still reading.
        """
        slot = self._turn
        self._turn ^= 1
        if self._pending_buf is not None and np.may_share_memory(self._pending_buf, self._scratch[slot]):
            self._wait()
        if self._scratch[slot].shape[0] < size:
            self._scratch[slot] = np.empty(size + size // 4, np.uint8)
        return self._scratch[slot][:size]

    def write_records(self, records: np.ndarray, bounds: np.ndarray,
                      fill: Callable[[], None] | None = None) -> np.ndarray:
        """Write whole records ``records[bounds[i]:bounds[i+1]]`` verbatim; returns their refs.

        ``records`` must not be modified afterwards: it is written in the background. ``fill``, when given,
        puts the records into ``records`` first, on the writer thread (refs only need the bounds).
        """
        k = bounds.shape[0] - 1
        refs = np.empty(k, dtype=np.int64)
        steps: list[tuple[_Segment, int, int] | _Segment] = []  # writes, and segments to close, in order
        i = 0
        while i < k:
            seg = self._segment_for(int(bounds[i + 1] - bounds[i]), steps)
            # Take as many records as fit into this segment in one write.
            fit = int(np.searchsorted(bounds[i + 1 :] - bounds[i], self.max_size - seg.size, side="right"))
            j = i + max(fit, 1)
            refs[i:j] = (len(self.segment_names) - 1) << 32 | (bounds[i:j] - bounds[i] + seg.size)
            steps.append((seg, int(bounds[i]), int(bounds[j])))
            seg.size += int(bounds[j] - bounds[i])
            i = j
        if fill is None and int(bounds[-1] - bounds[0]) < SMALL_WRITE:
            self._wait()  # a thread round trip costs more than writing a few records here
            _run(steps, records)
        elif steps:
            self._submit(records, steps, fill)
        return refs

    def _submit(self, records: np.ndarray, steps: list[tuple[_Segment, int, int] | _Segment],
                fill: Callable[[], None] | None) -> None:
        def job() -> None:
            if fill is not None:
                fill()
            _run(steps, records)

        self._wait()
        self._pending, self._pending_buf = self._pool.submit(job), records

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending, self._pending_buf = self._pending, None, None
            pending.result()

    def _segment_for(self, record_len: int, steps: list[tuple[_Segment, int, int] | _Segment]) -> _Segment:
        out = self._out
        if out is not None and (out.size == SEGMENT_HEADER_SIZE or out.size + record_len <= self.max_size):
            return out
        if out is not None:
            steps.append(out)  # closed by the writer thread once its last records are written
        name = segment_name(len(self.segment_names))
        self.segment_names.append(name)
        self._out = _Segment(os.path.join(self.dir, name))
        self._opened.append(self._out)
        return self._out

    def close(self) -> None:
        """Finish the open segment (flushed and fsynced); raises the error of any failed write."""
        try:
            self._wait()
        finally:
            try:
                self._out = None
                for seg in self._opened:  # the last one, and any a failed write left open
                    seg.close()
            finally:
                self._pool.shutdown(wait=True)


def _run(steps: list[tuple[_Segment, int, int] | _Segment], records: np.ndarray) -> None:
    for step in steps:
        if isinstance(step, _Segment):
            step.close()
        else:
            seg, a, b = step
            seg.write(records[a:b])


class _Segment:
    def __init__(self, path: str) -> None:
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._fh.write(SEGMENT_HEADER)
        self.size = SEGMENT_HEADER_SIZE  # including what is queued for writing

    def write(self, data: np.ndarray) -> None:
        self._fh.write(data.data)

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        finally:
            self._fh.close()


def encode_records(encodings: np.ndarray, buf: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame chunks as segment records; returns (bytes, record start offsets relative to the output)."""
    return kb.encode_chunk_records(np.asarray(encodings, np.int64), buf, np.asarray(offsets, np.int64))


def frame_records(encodings: np.ndarray, buf: np.ndarray, offsets: np.ndarray) -> ChunkBatch:
    """The chunks ``buf[offsets[i]:offsets[i+1]]`` as whole records (CRCs computed), in a framed ChunkBatch."""
    encodings = np.asarray(encodings, np.int64)
    offsets = np.asarray(offsets, np.int64)
    records, starts = encode_records(encodings, buf, offsets)
    lengths = np.diff(offsets)
    payload = starts + uvarint_sizes(lengths) + 1
    return ChunkBatch(records, payload, payload + lengths, encodings, framed=True)


_UVARINT_LIMITS = np.array([1 << bits for bits in range(7, 63, 7)], dtype=np.int64)


def uvarint_sizes(values: np.ndarray) -> np.ndarray:
    """Bytes of the unsigned varint of each (non-negative) value."""
    return np.searchsorted(_UVARINT_LIMITS, values, side="right").astype(np.int64) + 1


def record_spans(batch: ChunkBatch) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each chunk's whole record in a framed batch's buffer."""
    if not batch.framed:
        raise ValueError("chunk batch does not hold whole records")
    return batch.starts - uvarint_sizes(batch.ends - batch.starts) - 1, batch.ends + 4


def record_bounds(batch: ChunkBatch) -> np.ndarray:
    """Record boundaries of a framed batch whose records lie back to back in order (as ``frame_records``
    leaves them): record i is ``buf[bounds[i]:bounds[i+1]]``."""
    starts, ends = record_spans(batch)
    return np.append(starts, ends[-1] if ends.size else 0).astype(np.int64)
