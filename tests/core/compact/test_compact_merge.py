"""Merging blocks: verbatim chunk copies, vertical merges (chain and penalty), tombstones, output meta."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import build_aggr
from thanostools.core.compact.merge import (
    DEDUP_PENALTY,
    InputBlockError,
    compact_blocks,
    merge_into,
    sample_counts,
)
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.dedup import dedup_replicas
from thanostools.core.labels import Labels
from thanostools.core.pipeline.read import each_series
from thanostools.core.storage import chain_samples, select_blocks
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import SegmentWriter
from thanostools.core.tsdb.tombstones import encode_tombstones
from thanostools.core.tsdb.writer import BlockWriter

H = 3_600_000
EXT = {"cluster": "a"}
Series = dict[Labels, tuple[np.ndarray, np.ndarray]]


def lab(i: int, name: str = "m") -> Labels:
    return (("__name__", name), ("i", f"{i:05d}"))


def write(root: Path, series: Mapping[Labels, tuple[np.ndarray, np.ndarray]], mint: int, maxt: int, *,
          ext: Mapping[str, str] = EXT) -> Block:
    w = BlockWriter(str(root), min_time=mint, max_time=maxt, external_labels=ext, source="test")
    for labels in sorted(series):
        t, v = series[labels]
        w.add_samples(labels, np.asarray(t, np.int64), np.asarray(v, np.float64))
    meta = w.finish()
    return Block.open_dir(os.path.join(root, meta.ulid))


def samples(blocks: list[Block]) -> Series:
    out: Series = {}
    for batch in select_blocks(blocks):
        for i in range(len(batch)):
            labels, t, v = batch.series(i)
            out[labels] = (t.copy(), v.copy())
    return out


def assert_same(a: Series, b: Series) -> None:
    assert list(a) == list(b)
    for labels in a:
        np.testing.assert_array_equal(a[labels][0], b[labels][0], err_msg=str(labels))
        np.testing.assert_array_equal(a[labels][1], b[labels][1], err_msg=str(labels))


def regular(n_series: int, mint: int, maxt: int, step: int, *, every: int = 1, seed: int = 0,
            offset: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(mint + offset, maxt, step, dtype=np.int64)
    return {lab(i): (t, rng.random(t.size)) for i in range(0, n_series, every)}


def compact(tmp_path: Path, blocks: list[Block], **kw: object) -> Block | None:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    res = compact_blocks(blocks, str(out), external_labels=EXT, resolution=0, batch_series=7, **kw)  # type: ignore[arg-type]
    return None if res.meta is None else Block.open_dir(str(out / res.meta.ulid))


def chunk_bytes(block: Block) -> dict[Labels, list[bytes]]:
    out: dict[Labels, list[bytes]] = {}
    for s in each_series(block):
        out[s.labels.labels(0)] = [s.chunks.payload(j) for j in range(len(s.chunks))]
    return out


def test_horizontal_compaction_copies_chunks_and_writes_the_meta(tmp_path: Path) -> None:
    ins = [write(tmp_path / "in", regular(60, k * 2 * H, (k + 1) * 2 * H, 15000, every=k + 1, seed=k),
                 k * 2 * H, (k + 1) * 2 * H) for k in range(3)]
    out = compact(tmp_path, ins)
    assert out is not None
    assert_same(samples([out]), samples(ins))
    got = chunk_bytes(out)
    for labels in got:
        expected = [c for b in ins for c in chunk_bytes(b).get(labels, [])]
        assert got[labels] == expected  # verbatim, in time order
    m = out.meta
    assert (m.min_time, m.max_time, m.level) == (0, 6 * H, 2)
    assert m.sources == sorted(b.ulid for b in ins)
    assert [(p.ulid, p.min_time, p.max_time) for p in m.parents] == [(b.ulid, b.meta.min_time, b.meta.max_time)
                                                                     for b in ins]
    assert m.thanos is not None and m.thanos.source == "compactor" and m.thanos.labels == EXT
    assert m.thanos.index_stats.series_max_size > 0 and m.thanos.segment_files == ["000001"]
    assert m.stats.num_series == 60 and m.stats.num_samples == sum(b.meta.stats.num_samples for b in ins)


def test_sources_are_the_union_of_input_sources(tmp_path: Path) -> None:
    a = write(tmp_path / "in", regular(5, 0, 2 * H, 60000), 0, 2 * H)
    b = write(tmp_path / "in", regular(5, 2 * H, 4 * H, 60000), 2 * H, 4 * H)
    ab = compact(tmp_path, [a, b])
    c = write(tmp_path / "in", regular(5, 4 * H, 6 * H, 60000), 4 * H, 6 * H)
    assert ab is not None
    abc = compact(tmp_path, [ab, c])
    assert abc is not None
    assert abc.meta.level == 3 and abc.meta.sources == sorted([a.ulid, b.ulid, c.ulid])
    assert [p.ulid for p in abc.meta.parents] == [ab.ulid, c.ulid]


def test_vertical_chain_merge(tmp_path: Path) -> None:
    a = write(tmp_path / "in", regular(30, 0, 2 * H, 15000, seed=1), 0, 2 * H)
    b = write(tmp_path / "in", regular(30, H, 3 * H, 10000, every=2, seed=2), H, 3 * H)
    out = compact(tmp_path, [a, b])
    assert out is not None
    assert_same(samples([out]), samples([a, b]))
    for s in each_series(out):
        assert bool((s.chunks.mint[1:] > s.chunks.maxt[:-1]).all())
        counts = s.chunks.sample_counts()
        assert int(counts.max()) <= 240
    assert out.meta.min_time == 0 and out.meta.max_time == 3 * H


def test_reencoded_chunks_hold_at_most_120_samples(tmp_path: Path) -> None:
    t = np.arange(0, 2 * H, 15000, dtype=np.int64)
    a = write(tmp_path / "in", {lab(0): (t, np.ones(t.size))}, 0, 2 * H)
    b = write(tmp_path / "in", {lab(0): (t + 5000, np.ones(t.size) * 2)}, 0, 2 * H)
    out = compact(tmp_path, [a, b])
    assert out is not None
    s = next(each_series(out))
    counts = s.chunks.sample_counts().tolist()
    assert counts == [120] * (2 * t.size // 120) + ([2 * t.size % 120] if 2 * t.size % 120 else [])


def test_identical_replicas_keep_their_chunks(tmp_path: Path) -> None:
    data = regular(20, 0, 2 * H, 15000, seed=5)
    a = write(tmp_path / "in", data, 0, 2 * H)
    b = write(tmp_path / "in", data, 0, 2 * H)
    res = compact_blocks([a, b], str(tmp_path), external_labels=EXT, resolution=0)
    assert res.meta is not None and res.stats.reencoded_chunks == 0
    out = Block.open_dir(str(tmp_path / res.meta.ulid))
    assert chunk_bytes(out) == chunk_bytes(a)


def test_penalty_dedup_matches_the_query_time_algorithm(tmp_path: Path) -> None:
    a = write(tmp_path / "in", regular(25, 0, 2 * H, 15000, seed=7), 0, 2 * H)
    b = write(tmp_path / "in", regular(25, 0, 2 * H, 15000, seed=8, offset=3000), 0, 2 * H)
    out = compact(tmp_path, [a, b], dedup=DEDUP_PENALTY)
    assert out is not None
    sa, sb = samples([a]), samples([b])
    assert_same(samples([out]), {k: dedup_replicas([sa[k], sb[k]]) for k in sa})


def test_penalty_dedup_fills_gaps_from_the_other_replica(tmp_path: Path) -> None:
    r0 = regular(5, 0, 2 * H, 15000, seed=7)
    r1 = regular(5, 0, 2 * H, 15000, seed=8, offset=3000)
    for series, (lo, hi) in ((r0, (30, 40)), (r1, (60, 90))):
        for k, (t, v) in series.items():
            keep = (t < lo * 60000) | (t > hi * 60000)
            series[k] = (t[keep], v[keep])
    a = write(tmp_path / "in", r0, 0, 2 * H)
    b = write(tmp_path / "in", r1, 0, 2 * H)
    out = compact(tmp_path, [a, b], dedup=DEDUP_PENALTY)
    assert out is not None
    got = samples([out])
    for k in r0:
        t = got[k][0]
        assert bool((np.diff(t) > 0).all())
        assert set(t.tolist()) <= set(r0[k][0].tolist()) | set(r1[k][0].tolist())
        assert t.size > r0[k][0].size  # r0's gap is filled from r1
        assert int(np.diff(t).max()) <= 3 * 15000  # a switch costs up to ~2 scrape intervals


def test_tombstones_are_applied(tmp_path: Path) -> None:
    data = regular(10, 0, 2 * H, 15000, seed=3)
    a = write(tmp_path / "in", data, 0, 2 * H)
    refs = {lab_: int(ref) for lab_, ref in zip(*_refs(a), strict=True)}
    stones = {refs[lab(1)]: [(0, 2 * H)], refs[lab(2)]: [(10 * 60000, 20 * 60000), (H, H + 60000)]}
    path = str(tmp_path / "in" / a.ulid)
    with open(os.path.join(path, "tombstones"), "wb") as fh:
        fh.write(encode_tombstones(stones))
    a = Block.open_dir(path)
    out = compact(tmp_path, [a])
    assert out is not None
    got = samples([out])
    assert lab(1) not in got
    assert_same(got, samples([a]))  # reading applies the tombstones too
    assert out.tombstones == {}


def _refs(block: Block) -> tuple[list[Labels], list[int]]:
    sb = block.index.series(block.index.all_postings())
    return sb.labels, sb.refs.tolist()


def test_everything_deleted_gives_no_block(tmp_path: Path) -> None:
    a = write(tmp_path / "in", regular(3, 0, H, 60000), 0, H)
    path = str(tmp_path / "in" / a.ulid)
    with open(os.path.join(path, "tombstones"), "wb") as fh:
        fh.write(encode_tombstones({ref: [(0, H)] for ref in _refs(a)[1]}))
    out = tmp_path / "out"
    out.mkdir()
    res = compact_blocks([Block.open_dir(path)], str(out), external_labels=EXT, resolution=0)
    assert res.meta is None and res.stats.dropped_series == 3 and os.listdir(out) == []


def test_series_in_some_inputs_only_and_small_batches(tmp_path: Path) -> None:
    a = write(tmp_path / "in", {k: v for k, v in regular(50, 0, H, 60000).items() if k[1][1] < "00020"}, 0, H)
    b = write(tmp_path / "in", regular(50, H, 2 * H, 60000, every=3), H, 2 * H)
    c = write(tmp_path / "in", {lab(i, "z"): v for i, v in enumerate(regular(4, 2 * H, 3 * H, 60000).values())},
              2 * H, 3 * H)
    out = compact(tmp_path, [a, b, c])
    assert out is not None
    assert_same(samples([out]), samples([a, b, c]))


def test_chunks_starting_at_the_block_end_are_dropped(tmp_path: Path) -> None:
    t = np.array([0, 60000, 2 * H], dtype=np.int64)  # the last sample sits at maxTime (Issue 347)
    w = BlockWriter(str(tmp_path / "in"), min_time=0, max_time=2 * H, external_labels=EXT)
    w.add_chunks(lab(0), np.array([1, 1]), *_two_chunks(t), np.array([0, 2 * H]), np.array([60000, 2 * H]), 3)
    meta = w.finish()
    a = Block.open_dir(str(tmp_path / "in" / meta.ulid))
    out = compact(tmp_path, [a])
    assert out is not None
    assert samples([out])[lab(0)][0].tolist() == [0, 60000]


def _two_chunks(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    buf, offsets = xor.encode_batch(t, np.ones(t.size), np.array([0, 2, 3]))
    return buf, offsets


def test_overlapping_aggr_chunks_are_refused(tmp_path: Path) -> None:
    t = np.arange(0, 10 * 300000, 300000, dtype=np.int64)
    sub = xor.encode(t, np.ones(t.size))
    payload = np.frombuffer(build_aggr([(1, sub), (1, sub), None, None, None]), np.uint8)
    blocks = []
    for _ in range(2):
        w = BlockWriter(str(tmp_path / "in"), min_time=0, max_time=H, external_labels=EXT, resolution=300000)
        w.add_chunks(lab(0), np.array([0xFF]), payload, np.array([0, payload.size]), t[:1], t[-1:], 10)
        blocks.append(Block.open_dir(str(tmp_path / "in" / w.finish().ulid)))
    assert sample_counts(payload, np.array([0]), np.array([payload.size]), np.array([0xFF])).tolist() == [10]
    res = compact_blocks(blocks[:1], str(tmp_path), external_labels=EXT, resolution=300000)
    assert res.meta is not None and res.meta.stats.num_samples == 10
    blocks[1] = _with_other_bytes(tmp_path, t)
    with pytest.raises(InputBlockError):
        compact_blocks(blocks, str(tmp_path), external_labels=EXT, resolution=300000)


def _with_other_bytes(tmp_path: Path, t: np.ndarray) -> Block:
    sub = xor.encode(t, np.full(t.size, 2.0))
    payload = np.frombuffer(build_aggr([(1, sub), (1, sub), None, None, None]), np.uint8)
    w = BlockWriter(str(tmp_path / "in"), min_time=0, max_time=H, external_labels=EXT, resolution=300000)
    w.add_chunks(lab(0), np.array([0xFF]), payload, np.array([0, payload.size]), t[:1], t[-1:], 10)
    return Block.open_dir(str(tmp_path / "in" / w.finish().ulid))


def test_stale_nan_bits_survive_a_merge(tmp_path: Path) -> None:
    t = np.arange(0, 10 * 60000, 60000, dtype=np.int64)
    v = np.ones(t.size).view(np.uint64).copy()
    v[3] = np.uint64(STALE_NAN_BITS)
    a = write(tmp_path / "in", {lab(0): (t, v.view(np.float64))}, 0, H)
    b = write(tmp_path / "in", {lab(0): (t + 1, np.ones(t.size))}, 0, H)
    out = compact(tmp_path, [a, b])
    assert out is not None
    got_t, got_v = samples([out])[lab(0)]
    expected_t, expected_v = chain_samples([samples([a])[lab(0)], samples([b])[lab(0)]])
    np.testing.assert_array_equal(got_t, expected_t)
    assert got_v.tolist() == expected_v.tolist() and int(STALE_NAN_BITS) in got_v.tolist()


def test_plain_block_writer_gives_the_same_block(tmp_path: Path) -> None:
    a = write(tmp_path / "in", regular(30, 0, 2 * H, 15000, seed=1), 0, 2 * H)
    b = write(tmp_path / "in", regular(30, H, 3 * H, 10000, every=2, seed=2), H, 3 * H)
    batched = compact(tmp_path, [a, b])
    plain_dir = tmp_path / "plain"
    w = BlockWriter(str(plain_dir), min_time=0, max_time=3 * H, external_labels=EXT)
    stats = merge_into([a, b], w, batch_series=7)
    plain = Block.open_dir(str(plain_dir / w.finish().ulid))
    assert batched is not None and stats.series == plain.meta.stats.num_series
    assert chunk_bytes(plain) == chunk_bytes(batched)
    assert plain.meta.stats == batched.meta.stats



@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.dictionaries(st.sampled_from(["__name__", "a", "ab", "b", "b_"]),
                                         st.sampled_from(["x", "xy", "y", "a", "\u00e9", "\u20ac", "Z"]),
                                         min_size=1, max_size=3),
                         max_size=12),
                min_size=1, max_size=4))
def test_label_sets_merge_in_prometheus_order(tmp_path_factory: pytest.TempPathFactory,
                                              inputs: list[list[dict[str, str]]]) -> None:
    """Label sets sharing prefixes, names and values across inputs come out once each, in Prometheus' order
    (byte order of the strings), however the inputs' symbol tables differ."""
    root = tmp_path_factory.mktemp("labels")
    blocks = []
    for k, sets in enumerate(inputs):
        series = {tuple(sorted(d.items())): (np.array([k * H + 1000]), np.array([float(k)])) for d in sets}
        if series:
            blocks.append(write(root / "in", series, k * H, (k + 1) * H))
    if not blocks:
        return
    out = compact(root, blocks)
    assert out is not None
    merged = samples([out])
    assert list(merged) == sorted(samples(blocks), key=lambda lab: [(n.encode(), v.encode()) for n, v in lab])
    assert_same(merged, samples(blocks))


def test_extensions_are_carried_through_merged_key_by_key(tmp_path: Path) -> None:
    blocks = []
    for k, ext in enumerate([{"tenant": "a", "shard": 1}, None, {"shard": 2, "extra": [1, 2]}]):
        w = BlockWriter(str(tmp_path / "in"), min_time=k * H, max_time=(k + 1) * H, external_labels=EXT,
                        source="test", extensions=ext)
        w.add_samples(lab(0), np.array([k * H + 1000]), np.array([1.0]))
        blocks.append(Block.open_dir(str(tmp_path / "in" / w.finish().ulid)))
    assert blocks[0].meta.thanos is not None and blocks[0].meta.thanos.extensions == {"tenant": "a", "shard": 1}
    out = compact(tmp_path, blocks)
    assert out is not None and out.meta.thanos is not None
    assert out.meta.thanos.extensions == {"tenant": "a", "shard": 2, "extra": [1, 2]}
    (tmp_path / "plain").mkdir()
    plain = compact(tmp_path / "plain", [blocks[1]])
    assert plain is not None and plain.meta.thanos is not None and plain.meta.thanos.extensions is None


def test_merged_records_roll_over_small_segments(tmp_path: Path) -> None:
    """Records assembled on the writer thread land in the right segment files, cut at the size limit."""
    a = write(tmp_path / "in", regular(40, 0, 2 * H, 15000, seed=3), 0, 2 * H)
    b = write(tmp_path / "in", regular(40, 2 * H, 4 * H, 15000, seed=4), 2 * H, 4 * H)
    w = BlockWriter(str(tmp_path / "out"), min_time=0, max_time=4 * H, external_labels=EXT)
    w._segments = SegmentWriter(os.path.join(w.tmp_dir, "chunks"), max_segment_size=8192)
    merge_into([a, b], w, batch_series=7)
    out = Block.open_dir(str(tmp_path / "out" / w.finish().ulid))
    segments = sorted(os.listdir(tmp_path / "out" / out.ulid / "chunks"))
    assert len(segments) > 5 and out.meta.thanos is not None and out.meta.thanos.segment_files == segments
    assert all(os.path.getsize(tmp_path / "out" / out.ulid / "chunks" / s) <= 8192 for s in segments)
    assert_same(samples([out]), samples([a, b]))
    assert chunk_bytes(out) == {k: chunk_bytes(a).get(k, []) + chunk_bytes(b).get(k, []) for k in chunk_bytes(out)}
