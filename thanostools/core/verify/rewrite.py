"""Rewrite a block without the chunks the index health check complains about (source ``bucket.repair``).

Dropped: chunks completely outside the block range, Issue-347 chunks (starting at maxTime) and
duplicated chunks (same range, same bytes). Label pairs are re-sorted and series re-ordered when the
index had them out of order; series that end up with the same labels are merged. Anything else
(chunks partly outside the range, overlapping chunks with different data) stops the rewrite.
The pipeline configured as read (in label order, or re-sorted) → ``Repair`` → write (``core/pipeline``).
"""

from __future__ import annotations

from thanostools.core.constants import RESOLUTION_RAW
from thanostools.core.errors import HaltError
from thanostools.core.pipeline.read import read_series
from thanostools.core.pipeline.repair import Repair, RepairStats, sorted_label_order
from thanostools.core.pipeline.write import WriteStats, write_series
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.labelkeys import SymbolTable
from thanostools.core.tsdb.meta import SOURCE_BUCKET_REPAIR, BlockMeta
from thanostools.core.tsdb.writer import BlockWriter

RewriteStats = RepairStats


def _writer(meta: BlockMeta, out_dir: str) -> BlockWriter:
    parents = [{"ulid": p.ulid, "minTime": p.min_time, "maxTime": p.max_time} for p in meta.parents]
    return BlockWriter(out_dir, min_time=meta.min_time, max_time=meta.max_time,
                       external_labels=dict(meta.external_labels), resolution=meta.resolution,
                       source=SOURCE_BUCKET_REPAIR, level=meta.level, sources=meta.sources or [meta.ulid],
                       parents=parents, extensions=meta.thanos.extensions if meta.thanos else None)


def rewrite_repaired(block: Block, out_dir: str, *, reorder: bool = False,
                     batch_size: int = 5000) -> tuple[BlockMeta, str, RewriteStats]:
    """Write the repaired copy of ``block`` under ``out_dir``; returns (meta, block directory, stats).

    The new block keeps the range, labels, level and sources of the original (as Thanos' repair does).
    """
    meta = block.meta
    if meta.resolution != RESOLUTION_RAW:
        raise HaltError(f"block {meta.ulid} is downsampled; downsampled blocks are not repaired")
    if block.tombstones:
        raise HaltError(f"block {meta.ulid} has tombstones; compact it before repairing")
    stats = RewriteStats()
    symbols = SymbolTable.union([block.index.symbols])
    refs, fixed = sorted_label_order(block, symbols) if reorder else (None, None)
    repair = Repair(meta.min_time, meta.max_time, stats, fixed)
    writer = _writer(meta, out_dir)
    try:
        batches = repair(read_series([block], batch_series=batch_size, symbols=symbols, refs=refs))
        try:
            write_series(batches, writer, WriteStats())
        except ValueError as exc:  # series order: only when the index was unsorted and reorder was off
            raise HaltError(f"block {meta.ulid}: {exc}") from None
        new_meta = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return new_meta, writer.dir, stats
