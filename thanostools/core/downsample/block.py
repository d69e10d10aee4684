"""Downsampling one block into a new local block directory (FORMATS.md §7.4, §7.5, §7.7)."""

from __future__ import annotations

import contextlib
import os

import numpy as np
from numpy.typing import NDArray

from thanostools.core.chunkenc import xor
from thanostools.core.constants import RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample.series import (
    AggrChunks,
    check_resolutions,
    decode_aggr_chunks,
    downsample_aggr_batch,
    downsample_raw,
    downsample_raw_batch,
)
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.labels import Labels, format_labels
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_AGGR, ENC_XOR, ENCODING_NAMES, ChunkBatch
from thanostools.core.tsdb.index import SeriesBatch
from thanostools.core.tsdb.meta import (
    SOURCE_COMPACTOR,
    ZERO_TIME,
    BlockMeta,
    BlockStats,
    ThanosMeta,
    write_meta_file,
)
from thanostools.core.tsdb.writer import BlockWriter

I64 = NDArray[np.int64]
DEFAULT_BATCH_SERIES = 2000


def downsample_block(block: Block, target_resolution: int, out_dir: str, *,
                     batch_series: int = DEFAULT_BATCH_SERIES) -> BlockMeta:
    """Write the ``target_resolution`` version of ``block`` as ``out_dir/<new ULID>`` and return its meta.

    Raw blocks go to 5m, 5m blocks to 1h. The source block is only read.
    """
    src = block.meta
    check_resolutions(src.resolution, target_resolution)
    writer = BlockWriter(out_dir, min_time=src.min_time, max_time=src.max_time,
                         external_labels=src.thanos.labels if src.thanos else None, resolution=target_resolution,
                         source=SOURCE_COMPACTOR, level=src.level, sources=src.sources or None,
                         extensions=src.thanos.extensions if src.thanos else None)
    try:
        for sb in block.index.iter_series(batch_size=batch_series):
            batch = block.chunks.read(sb.chunk_ref)
            if src.resolution == RESOLUTION_RAW:
                out = _raw_batch(block, sb, batch, target_resolution)
            else:
                out = _aggr_batch(block, sb, batch, target_resolution)
            _add_series(writer, sb.labels, out)
    except BaseException:
        writer.abort()
        raise
    written = writer.finish()
    meta = downsampled_meta(src, written, target_resolution)
    write_meta_file(writer.dir, meta)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(writer.dir, "tombstones"))  # Thanos' downsampled blocks have none
    return meta


def downsampled_meta(src: BlockMeta, written: BlockMeta, resolution: int) -> BlockMeta:
    """The source meta with a new ULID, resolution, source, stats, segment files and index stats; time range
    and the whole ``compaction`` object stay as they were (§7.7)."""
    meta = src.copy()
    meta.ulid = written.ulid
    meta.version = 1
    meta.stats = BlockStats(num_samples=written.stats.num_samples, num_series=written.stats.num_series,
                            num_chunks=written.stats.num_chunks)
    thanos = meta.thanos or ThanosMeta()
    assert written.thanos is not None
    thanos.resolution = resolution
    thanos.source = SOURCE_COMPACTOR
    thanos.segment_files = list(written.thanos.segment_files)
    thanos.index_stats = written.thanos.index_stats
    thanos.files = []
    thanos.upload_time = ZERO_TIME
    meta.thanos = thanos
    return meta


def _add_series(writer: BlockWriter, labels: list[Labels], out: AggrChunks) -> None:
    enc = np.full(len(out), ENC_AGGR, dtype=np.int64)
    samples = np.concatenate([[0], np.cumsum(out.num_samples)])
    for s, lab in enumerate(labels):
        a, b = out.series_range(s)
        if a < b:
            writer.add_chunks(lab, enc[a:b], out.buf, out.offsets[a : b + 1], out.mint[a:b], out.maxt[a:b],
                              int(samples[b] - samples[a]))


def _unsupported(block: Block, labels: Labels, code: int) -> UnsupportedError:
    name = ENCODING_NAMES.get(code, "unknown")
    return UnsupportedError(f"block {block.ulid}: series {format_labels(labels)}: cannot downsample chunk "
                            f"encoding {code} ({name}); only float series are supported")


def _raw_batch(block: Block, sb: SeriesBatch, batch: ChunkBatch, resolution: int) -> AggrChunks:
    series_of_chunk = np.repeat(np.arange(len(sb)), np.diff(sb.chunk_offsets))
    bad = np.flatnonzero(batch.encodings != ENC_XOR)
    if bad.size:
        i = int(bad[0])
        raise _unsupported(block, sb.labels[int(series_of_chunk[i])], int(batch.encodings[i]))
    same = series_of_chunk[1:] == series_of_chunk[:-1]
    overlap = np.flatnonzero(same & (sb.chunk_maxt[:-1] >= sb.chunk_mint[1:]))
    if overlap.size:
        lab = sb.labels[int(series_of_chunk[int(overlap[0])])]
        raise CorruptBlockError(f"found overlapping chunks within series {format_labels(lab)}",
                                block=block.ulid, file="index")
    dec = xor.decode_batch(batch.buf, batch.starts, batch.ends)
    return downsample_raw_batch(dec.t, dec.v, dec.offsets, sb.chunk_offsets, resolution)


def _aggr_batch(block: Block, sb: SeriesBatch, batch: ChunkBatch, resolution: int) -> AggrChunks:
    offs = sb.chunk_offsets
    has = offs[1:] > offs[:-1]
    first = np.minimum(offs[:-1], max(len(sb.chunk_mint) - 1, 0))
    last = np.maximum(offs[1:] - 1, 0)
    mint = np.where(has, sb.chunk_mint[first] if sb.chunk_mint.size else 0, 0)
    maxt = np.where(has, sb.chunk_maxt[last] if sb.chunk_maxt.size else 0, 0)
    if bool((batch.encodings == ENC_AGGR).all()):
        buf, starts, ends, series_chunks = batch.buf, batch.starts, batch.ends, offs
    else:
        buf, starts, ends, series_chunks = _normalise(block, sb, batch)
    dec = decode_aggr_chunks(buf, starts, ends, block=block.ulid)
    return downsample_aggr_batch(dec, series_chunks, mint, maxt, block.meta.resolution, resolution)


def _normalise(block: Block, sb: SeriesBatch, batch: ChunkBatch) -> tuple[np.ndarray, I64, I64, I64]:
    """Chunks of a downsampled block that are not AggrChunks (an old Thanos bug) become AggrChunks of 5m;
    empty ones are dropped. Rare, so a Python loop over chunks is fine here."""
    parts: list[bytes] = []
    series_chunks = [0]
    for s, lab in enumerate(sb.labels):
        for c in range(int(sb.chunk_offsets[s]), int(sb.chunk_offsets[s + 1])):
            code = int(batch.encodings[c])
            data = batch.data(c)
            if code == ENC_AGGR:
                parts.append(data)
            elif code == ENC_XOR:
                if xor.num_samples(data):
                    t, v = xor.decode(data)
                    out = downsample_raw(t, v, RESOLUTION_5M)
                    parts.extend(out.chunk(k) for k in range(len(out)))
            else:
                raise _unsupported(block, lab, code)
        series_chunks.append(len(parts))
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    ends = np.cumsum(sizes)
    return (np.frombuffer(b"".join(parts), dtype=np.uint8), ends - sizes, ends,
            np.array(series_chunks, dtype=np.int64))
