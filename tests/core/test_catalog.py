"""The block catalog and its filters: each filter alone on real buckets, views, and the order of a chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thanostools.core.blockio import write_marker
from thanostools.core.catalog import (
    BlockCatalog,
    CompactionLeftovers,
    ConsistencyDelay,
    DropMarked,
    ExcludeBlocks,
    LabelShard,
    MetaFilter,
    Selected,
    TimePartition,
)
from thanostools.core.inspect import BlockFilter
from thanostools.core.objstore.bucket import open_bucket
from thanostools.core.relabel import load_relabel_configs
from thanostools.core.tsdb.markers import DeletionMark, NoCompactMark
from thanostools.core.tsdb.meta import SOURCE_COMPACTOR
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid

H = 3_600_000
NOW = 1_700_000_000_000


def _block(root: Path, mint: int, maxt: int, ext: dict[str, str], *, sources: list[str] | None = None,
           level: int = 1, ulid_ms: int = NOW - 10 * H, source: str = "sidecar") -> str:
    w = BlockWriter(str(root), ulid=new_ulid(ulid_ms), external_labels=ext, min_time=mint, max_time=maxt,
                    level=level, sources=sources, source=source)
    w.add_samples((("__name__", "m"),), np.array([mint], np.int64), np.array([1.0]))
    return w.finish().ulid


def _ids(catalog: BlockCatalog) -> set[str]:
    return {b.ulid for b in catalog.blocks()}


@pytest.fixture
def bucket(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two raw blocks of shard a compacted into a third, one block of shard b, one young block of shard b."""
    root = tmp_path / "bucket"
    root.mkdir()
    ids = {"a1": _block(root, 0, H, {"shard": "a"}), "a2": _block(root, H, 2 * H, {"shard": "a"})}
    ids["a12"] = _block(root, 0, 2 * H, {"shard": "a"}, sources=[ids["a1"], ids["a2"]], level=2,
                        source=SOURCE_COMPACTOR)
    ids["b1"] = _block(root, 2 * H, 3 * H, {"shard": "b"})
    ids["young"] = _block(root, 3 * H, 4 * H, {"shard": "b"}, ulid_ms=NOW - 60_000)
    return root, ids


def _catalog(root: Path, *filters: MetaFilter) -> BlockCatalog:
    return BlockCatalog(open_bucket(str(root)), filters=filters)


def test_each_filter_alone(bucket: tuple[Path, dict[str, str]]) -> None:
    root, ids = bucket
    every = set(ids.values())
    assert _ids(_catalog(root)) == every
    assert _ids(_catalog(root, TimePartition(2 * H, None))) == {ids["b1"], ids["young"]}
    assert _ids(_catalog(root, TimePartition(None, H - 1))) == {ids["a1"], ids["a12"]}
    keep_a = LabelShard(tuple(load_relabel_configs("- action: keep\n  source_labels: [shard]\n  regex: a\n")))
    assert _ids(_catalog(root, keep_a)) == {ids["a1"], ids["a2"], ids["a12"]}
    by_id = LabelShard(tuple(load_relabel_configs(f"- action: drop\n  source_labels: [__block_id]\n"
                                                  f"  regex: {ids['b1']}\n")))
    assert _ids(_catalog(root, by_id)) == every - {ids["b1"]}
    assert _ids(_catalog(root, ConsistencyDelay(30 * 60_000, NOW))) == every - {ids["young"]}
    assert _ids(_catalog(root, CompactionLeftovers())) == every - {ids["a1"], ids["a2"]}
    assert _ids(_catalog(root, ExcludeBlocks({ids["a1"]}))) == every - {ids["a1"]}
    assert _ids(_catalog(root, Selected(BlockFilter(ids=(ids["b1"],))))) == {ids["b1"]}
    bucket_ = open_bucket(str(root))
    write_marker(bucket_, DeletionMark(ids["b1"], NOW // 1000, "test"))
    write_marker(bucket_, NoCompactMark(ids["a1"], NOW // 1000, "manual", "test"))
    assert _ids(_catalog(root, DropMarked("deletion"))) == every - {ids["b1"]}
    assert _ids(_catalog(root, DropMarked("no-compact"))) == every - {ids["a1"]}


def test_the_compacted_block_hides_its_sources_only_when_it_is_listed(bucket: tuple[Path, dict[str, str]]) -> None:
    """Thanos's order: sharding and marks before leftovers, so a block this instance does not serve (another
    shard's, or one marked for deletion) never makes this instance drop the blocks it covers."""
    root, ids = bucket
    write_marker(open_bucket(str(root)), DeletionMark(ids["a12"], NOW // 1000, "test"))
    thanos_order = _catalog(root, DropMarked("deletion"), CompactionLeftovers())
    assert {ids["a1"], ids["a2"]} <= _ids(thanos_order) and ids["a12"] not in _ids(thanos_order)
    wrong_order = _catalog(root, CompactionLeftovers(), DropMarked("deletion"))
    assert not _ids(wrong_order) & {ids["a1"], ids["a2"], ids["a12"]}  # the data of shard a would vanish

    only_sources = TimePartition(None, H - 1)  # a12 overlaps this partition too: it stays, and hides a1
    assert _ids(_catalog(root, only_sources, CompactionLeftovers())) == {ids["a12"]}
    no_compacted = ExcludeBlocks({ids["a12"]})
    assert _ids(_catalog(root, no_compacted, CompactionLeftovers())) == {ids["a1"], ids["a2"], ids["b1"],
                                                                          ids["young"]}


def test_views_filter_the_base_listing_and_share_opened_blocks(bucket: tuple[Path, dict[str, str]]) -> None:
    root, ids = bucket
    base = _catalog(root, TimePartition(None, 2 * H - 1))
    left_out: set[str] = set()
    view = base.view(ExcludeBlocks(left_out), CompactionLeftovers())
    assert _ids(view) == {ids["a12"]}
    assert view.open_block(ids["a12"]) is base.open_block(ids["a12"])
    left_out.add(ids["a12"])  # a live set: the view sees the change at its next look
    assert _ids(view) == {ids["a1"], ids["a2"]}
    with pytest.raises(Exception, match="not found"):
        view.open_block(ids["a12"])
    newer = _block(root, H, 2 * H, {"shard": "c"})
    assert newer not in _ids(view)  # the base has not synced again
    base.sync()
    assert newer in _ids(view)
