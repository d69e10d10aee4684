"""BlockWriter: ordering, chunk cutting, segment files, meta, and acceptance by promtool."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_prom import needs_promtool, promtool_dump
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.bytesource import MmapSource
from thanostools.core.tsdb.chunks import ChunkReader, SegmentWriter, frame_records, record_bounds
from thanostools.core.tsdb.writer import TMP_SUFFIX, BlockWriter

T0 = 21_600_000


def _series(n: int, samples: int = 480) -> list[tuple[tuple[tuple[str, str], ...], np.ndarray, np.ndarray]]:
    t = T0 + np.arange(samples, dtype=np.int64) * 15_000
    return [((("__name__", "m"), ("i", f"{i:05d}")), t, np.arange(samples, dtype=np.float64) + i) for i in range(n)]


def test_chunks_cut_like_the_prometheus_head(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path))
    (labels, t, v), = _series(1)
    w.add_samples(labels, t, v)
    meta = w.finish()
    b = Block.open_dir(str(tmp_path / meta.ulid))
    sb = b.index.series(b.index.all_postings())
    # FORMATS.md §3.6: four chunks of 120 samples ending at these times.
    assert sb.chunk_maxt.tolist() == [23385000, 25185000, 26985000, 28785000]
    assert meta.stats.num_chunks == 4 and meta.stats.num_samples == 480


def test_series_must_be_added_in_order(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path))
    s = _series(2, 10)
    w.add_samples(*s[1])
    with pytest.raises(ValueError, match="out of order"):
        w.add_samples(*s[0])
    with pytest.raises(ValueError, match="out of order"):
        w.add_samples(*s[1])
    w.abort()
    assert os.listdir(tmp_path) == []


def test_nothing_visible_until_finished(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path))
    w.add_samples(*_series(1, 10)[0])
    assert os.listdir(tmp_path) == [w.ulid + TMP_SUFFIX]
    meta = w.finish()
    assert sorted(os.listdir(tmp_path)) == [meta.ulid]
    assert sorted(os.listdir(tmp_path / meta.ulid)) == ["chunks", "index", "meta.json", "tombstones"]


def test_empty_block_has_empty_chunks_dir(tmp_path: Path) -> None:
    meta = BlockWriter(str(tmp_path), min_time=0, max_time=7_200_000).finish()
    assert os.listdir(tmp_path / meta.ulid / "chunks") == []
    b = Block.open_dir(str(tmp_path / meta.ulid))
    assert b.index.all_postings().tolist() == []
    assert list(b.select()) == []


@needs_promtool
def test_segment_rollover_is_readable_by_promtool(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path), external_labels={"k": "v"})
    w._segments = SegmentWriter(os.path.join(w.tmp_dir, "chunks"), max_segment_size=4096)
    series = _series(40)
    for labels, t, v in series:
        w.add_samples(labels, t, v)
    meta = w.finish()
    segs = sorted(os.listdir(tmp_path / meta.ulid / "chunks"))
    assert len(segs) > 3 and segs[:2] == ["000001", "000002"]
    assert all(os.path.getsize(tmp_path / meta.ulid / "chunks" / s) <= 4096 for s in segs)
    doc = json.loads((tmp_path / meta.ulid / "meta.json").read_text())
    assert doc["thanos"]["segment_files"] == segs
    lines = promtool_dump(tmp_path).splitlines()
    assert len(lines) == 40 * 480
    assert lines[0] == '{__name__="m", i="00000"} 0 21600000'
    assert lines[-1] == '{__name__="m", i="00039"} 518 28785000'  # 479 + 39


def test_segment_writer_keeps_order_across_small_large_and_filled_writes(tmp_path: Path) -> None:
    """Small writes (caller's thread), large ones and ones filled on the writer thread land in order."""
    rng = np.random.default_rng(7)
    w = SegmentWriter(str(tmp_path / "chunks"), max_segment_size=1 << 20)
    written: list[tuple[int, bytes]] = []
    for step in range(12):
        n = int(rng.choice([3, 600]))  # ~few KiB or ~1.2 MiB of records
        lengths = rng.integers(100, 4000, n)
        payload = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        framed = frame_records(np.ones(n, np.int64), payload, offsets)
        bounds = record_bounds(framed)
        if step % 3 == 2:  # assembled on the writer thread, into a scratch buffer
            out = w.scratch(int(bounds[-1]))

            def fill(out: np.ndarray = out, src: np.ndarray = framed.buf) -> None:
                out[:] = src

            refs = w.write_records(out, bounds, fill)
        else:
            refs = w.write_records(framed.buf, bounds)
        written += [(int(r), payload[offsets[i]:offsets[i + 1]].tobytes()) for i, r in enumerate(refs.tolist())]
    w.close()
    names = sorted(os.listdir(tmp_path / "chunks"))
    assert names == w.segment_names and len(names) > 2
    reader = ChunkReader([MmapSource(str(tmp_path / "chunks" / n)) for n in names])
    batch = reader.read(np.array([r for r, _ in written], dtype=np.int64))
    assert [batch.data(i) for i in range(len(written))] == [data for _, data in written]
