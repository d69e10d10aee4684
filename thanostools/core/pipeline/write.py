"""Writing: series batches into a ``BlockWriter``, chunk records copied on the writer's thread."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from thanostools.core.pipeline.table import ChunkedSeries
from thanostools.core.tsdb.writer import BlockWriter


@dataclass
class WriteStats:
    series: int = 0
    chunks: int = 0
    samples: int = 0
    dropped_series: int = 0  # series left without chunks


def write_series(batches: Iterable[ChunkedSeries], writer: BlockWriter, stats: WriteStats) -> None:
    """Add every batch (ordered by series then time, label sets increasing across batches) to ``writer``;
    series without chunks are left out."""
    for batch in batches:
        write_batch(batch, writer, stats)


def write_batch(batch: ChunkedSeries, writer: BlockWriter, stats: WriteStats) -> None:
    c = batch.chunks
    bounds = c.series_bounds(len(batch))
    written = int(np.count_nonzero(np.diff(bounds)))
    samples = int(batch.sample_counts().sum())
    stats.dropped_series += len(batch) - written
    stats.series += written
    stats.chunks += len(c)
    stats.samples += samples
    if written == 0:
        return
    records, fill = c.records(writer.record_buffer)
    writer.add_records_keys(batch.labels, records, c.mint, c.maxt, bounds, samples, fill)
