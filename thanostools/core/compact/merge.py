"""Merging N blocks into one new block (FORMATS.md §8.4, §3.6, §8.5, §8.6): the pipeline configured as
read (k-way by label set) → merge (overlaps, tombstones, dedup) → write (``core/pipeline``).
Memory: the writer's symbols and chunk metas plus one batch of series per input.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thanostools.core.groups import block_sources
from thanostools.core.pipeline.merge import (
    DEDUP_CHAIN,
    DEDUP_FUNCS,
    DEDUP_PENALTY,
    SAMPLES_PER_CHUNK,
    InputBlockError,
    MergeInput,
    MergeStats,
    OverlapMerge,
)
from thanostools.core.pipeline.read import read_series
from thanostools.core.pipeline.table import sample_counts
from thanostools.core.pipeline.write import write_series
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.meta import SOURCE_COMPACTOR, BlockMeta
from thanostools.core.tsdb.writer import BlockWriter

DEFAULT_BATCH_SERIES = 5000

__all__ = [
    "DEDUP_CHAIN",
    "DEDUP_FUNCS",
    "DEDUP_PENALTY",
    "DEFAULT_BATCH_SERIES",
    "SAMPLES_PER_CHUNK",
    "CompactResult",
    "InputBlockError",
    "MergeStats",
    "compact_blocks",
    "merge_input",
    "merge_into",
    "output_meta_args",
    "sample_counts",
]


@dataclass
class CompactResult:
    meta: BlockMeta | None  # None when the output would hold no samples (nothing was written)
    stats: MergeStats = field(default_factory=MergeStats)


def output_meta_args(inputs: Sequence[BlockMeta]) -> dict[str, Any]:
    """BlockWriter arguments for the compaction of ``inputs`` (in plan order), per §8.4."""
    sources: set[str] = set()
    for m in inputs:
        sources |= block_sources(m)
    return {
        "min_time": min(m.min_time for m in inputs),
        "max_time": max(m.max_time for m in inputs),
        "level": max(m.level for m in inputs) + 1,
        "sources": sorted(sources),
        "parents": [{"ulid": m.ulid, "minTime": m.min_time, "maxTime": m.max_time} for m in inputs],
        "extensions": merged_extensions(inputs),
    }


def merged_extensions(inputs: Sequence[BlockMeta]) -> Any:
    """The group's ``thanos.extensions``: objects merged key by key (a later input's value wins), else the
    first one given. Opaque to us, carried through so that whoever set them still finds them."""
    given = [m.thanos.extensions for m in inputs if m.thanos is not None and m.thanos.extensions is not None]
    if not given:
        return None
    if not all(isinstance(e, dict) for e in given):
        return copy.deepcopy(given[0])
    merged: dict[str, Any] = {}
    for e in given:
        merged.update(copy.deepcopy(e))
    return merged


def compact_blocks(
    blocks: Sequence[Block], out_dir: str, *, external_labels: Mapping[str, str], resolution: int,
    dedup: str = DEDUP_CHAIN, batch_series: int = DEFAULT_BATCH_SERIES,
) -> CompactResult:
    """Write the compaction of ``blocks`` (plan order) as a new block under ``out_dir``."""
    writer = BlockWriter(out_dir, external_labels=external_labels, resolution=resolution, source=SOURCE_COMPACTOR,
                         **output_meta_args([b.meta for b in blocks]))
    try:
        stats = merge_into(blocks, writer, dedup=dedup, batch_series=batch_series)
    except BaseException:
        writer.abort()
        raise
    if writer.num_samples == 0:
        writer.abort()
        return CompactResult(None, stats)
    return CompactResult(writer.finish(), stats)


def merge_input(block: Block) -> MergeInput:
    m = block.meta
    return MergeInput(block.ulid, m.min_time, m.max_time, block.tombstones)


def merge_into(blocks: Sequence[Block], writer: BlockWriter, *, dedup: str = DEDUP_CHAIN,
               batch_series: int = DEFAULT_BATCH_SERIES) -> MergeStats:
    """Stream the merged series of ``blocks`` into ``writer`` (which is not finished here)."""
    stats = MergeStats()
    merge = OverlapMerge([merge_input(b) for b in blocks], dedup, stats)
    write_series(merge(read_series(blocks, batch_series=batch_series)), writer, stats)
    return stats
