"""Downsampling one block into a new local block directory (FORMATS.md §7.4, §7.5, §7.7)."""

from __future__ import annotations

import contextlib
import os

from thanostools.core.pipeline.downsample import Downsample
from thanostools.core.pipeline.read import read_series
from thanostools.core.pipeline.write import WriteStats, write_series
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.meta import (
    SOURCE_COMPACTOR,
    ZERO_TIME,
    BlockMeta,
    BlockStats,
    ThanosMeta,
    write_meta_file,
)
from thanostools.core.tsdb.writer import BlockWriter

DEFAULT_BATCH_SERIES = 2000


def downsample_block(block: Block, target_resolution: int, out_dir: str, *,
                     batch_series: int = DEFAULT_BATCH_SERIES) -> BlockMeta:
    """Write the ``target_resolution`` version of ``block`` as ``out_dir/<new ULID>`` and return its meta.

    Raw blocks go to 5m, 5m blocks to 1h. The source block is only read.
    """
    src = block.meta
    downsample = Downsample(block.ulid, src.resolution, target_resolution)
    writer = BlockWriter(out_dir, min_time=src.min_time, max_time=src.max_time,
                         external_labels=src.thanos.labels if src.thanos else None, resolution=target_resolution,
                         source=SOURCE_COMPACTOR, level=src.level, sources=src.sources or None,
                         extensions=src.thanos.extensions if src.thanos else None)
    try:
        write_series(downsample(read_series([block], batch_series=batch_series)), writer, WriteStats())
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
