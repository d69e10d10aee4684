"""Block rewrites (FORMATS.md §11.7): relabel + delete on raw and downsampled blocks, merges, change logs, meta,
external-label edits, resumability."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from thanostools.core.chunkenc.aggr import Aggr
from thanostools.core.downsample import downsample_block
from thanostools.core.errors import ConfigError
from thanostools.core.inspect import BlockFilter
from thanostools.core.labels import Labels, from_dict
from thanostools.core.pipeline.read import each_series
from thanostools.core.relabel import load_deletion_requests, load_relabel_configs
from thanostools.core.rewrite import (
    RewriteSpec,
    find_rewrite,
    is_rewrite_output,
    preview_group_merges,
    rewrite_block,
    rewrite_bucket,
)
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace

HOUR = 3_600_000
START = 1_700_006_400_000
MIN64, MAX64 = -(2**63), 2**63 - 1

RELABEL = """
- action: labeldrop
  regex: instance
- source_labels: [__name__]
  regex: drop_me
  action: drop
- source_labels: [job]
  regex: b
  target_label: job
  replacement: c
"""
DELETE = f"""
- matchers: '{{__name__="http", path="/x"}}'
  intervals: [{{mint: {START + HOUR}, maxt: {START + 2 * HOUR - 1}}}]
- matchers: '{{job="c", path="/z"}}'
"""


def L(**kw: str) -> Labels:
    return from_dict(kw)


def series_data(hours: int = 6) -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    t = START + np.arange(0, hours * HOUR, 15_000, dtype=np.int64)
    t2 = t + 7_000  # the second replica scrapes at other times...
    t2[::4] = t[::4]  # ...except every fourth scrape, which collides
    return {
        L(__name__="up", job="a", instance="1"): (t, np.ones(t.shape[0])),
        L(__name__="up", job="a", instance="2"): (t2, np.full(t.shape[0], 2.0)),
        L(__name__="http", job="a", path="/x"): (t, np.arange(t.shape[0], dtype=np.float64)),
        L(__name__="http", job="b", path="/y"): (t, np.arange(t.shape[0], dtype=np.float64) * 2),
        L(__name__="http", job="b", path="/z"): (t, np.ones(t.shape[0])),
        L(__name__="drop_me", job="a"): (t, np.ones(t.shape[0])),
        L(__name__="keep", job="a"): (t, np.sin(np.arange(t.shape[0]))),
    }


def expected_labels(lab: Labels) -> Labels | None:
    """The relabel config above, written out by hand."""
    d = dict(lab)
    d.pop("instance", None)
    if d["__name__"] == "drop_me":
        return None
    if d.get("job") == "b":
        d["job"] = "c"
    return from_dict(d)


def expected_deleted(lab: Labels) -> list[tuple[int, int]] | None:
    d = dict(lab)
    if d["__name__"] == "http" and d.get("path") == "/x":
        return [(START + HOUR, START + 2 * HOUR - 1)]
    if d.get("job") == "c" and d.get("path") == "/z":
        return []
    return None


def expected_output(data: dict[Labels, tuple[np.ndarray, np.ndarray]]) -> dict[Labels, dict[int, float]]:
    """Relabel, merge (earlier input series win on equal timestamps), then delete."""
    out: dict[Labels, dict[int, float]] = {}
    for lab in sorted(data):
        new = expected_labels(lab)
        if new is None:
            continue
        merged = out.setdefault(new, {})
        for t, v in zip(*data[lab], strict=True):
            merged.setdefault(int(t), float(v))
    for lab in list(out):
        dels = expected_deleted(lab)
        if dels == []:
            del out[lab]
        elif dels:
            out[lab] = {t: v for t, v in out[lab].items() if not any(a <= t <= b for a, b in dels)}
    return {lab: dict(sorted(s.items())) for lab, s in out.items()}


def write_block(parent: Path, data: dict[Labels, tuple[np.ndarray, np.ndarray]], *, hours: int = 6,
                labels: dict[str, str] | None = None, resolution: int = 0) -> Path:
    w = BlockWriter(str(parent), min_time=START, max_time=START + hours * HOUR,
                    external_labels={"cluster": "eu1"} if labels is None else labels, resolution=resolution)
    for lab in sorted(data):
        w.add_samples(lab, *data[lab])
    w.finish()
    return Path(w.dir)


def dump(path: Path | str, aggregate: Aggr = Aggr.COUNT) -> dict[Labels, dict[int, float]]:
    out: dict[Labels, dict[int, float]] = {}
    for batch in Block.open_dir(str(path)).select([], aggregate=aggregate):
        for i in range(len(batch)):
            lab, t, v = batch.series(i)
            out[lab] = dict(zip(t.tolist(), v.view(np.float64).tolist(), strict=True))
    return out


def spec(relabel: str = RELABEL, delete: str = DELETE, **kw: object) -> RewriteSpec:
    return RewriteSpec(tuple(load_relabel_configs(relabel)), tuple(load_deletion_requests(delete)), **kw)  # type: ignore[arg-type]


def chunk_bytes(path: Path) -> dict[Labels, list[bytes]]:
    block = Block.open_dir(str(path))
    return {sc.labels.labels(0): [sc.chunks.payload(j) for j in range(len(sc.chunks))] for sc in each_series(block)}


# --- raw blocks ---------------------------------------------------------------------------------------------


def test_raw_rewrite_matches_expected_transform(tmp_path: Path) -> None:
    data = series_data()
    src = write_block(tmp_path / "src", data)
    res = rewrite_block(Block.open_dir(str(src)), spec(), str(tmp_path / "out"))
    assert res.meta is not None and res.path is not None
    assert dump(res.path) == expected_output(data)
    s = res.stats
    assert (s.series_in, s.series_out, s.series_dropped, s.series_deleted, s.series_merged) == (7, 4, 1, 1, 1)
    assert s.series_relabelled == 4  # two up (instance dropped), /y and /z (job b -> c)
    assert s.samples_in == sum(t.shape[0] for t, _ in data.values())
    assert s.samples_out == sum(len(v) for v in expected_output(data).values())
    collisions = data[L(__name__="up", job="a", instance="1")][0].shape[0] // 4
    assert s.samples_deduplicated == collisions
    assert s.samples_dropped == data[L(__name__="drop_me", job="a")][0].shape[0]


def test_untouched_series_keep_their_chunk_bytes(tmp_path: Path) -> None:
    src = write_block(tmp_path / "src", series_data())
    res = rewrite_block(Block.open_dir(str(src)), spec(), str(tmp_path / "out"))
    before, after = chunk_bytes(src), chunk_bytes(Path(res.path or ""))
    assert after[L(__name__="keep", job="a")] == before[L(__name__="keep", job="a")]
    assert after[L(__name__="http", job="c", path="/y")] == before[L(__name__="http", job="b", path="/y")]
    # /x lost one hour in the middle: only the chunks touching that hour were re-encoded
    x_before, x_after = before[L(__name__="http", job="a", path="/x")], after[L(__name__="http", job="a", path="/x")]
    assert x_after[0] == x_before[0] and x_after[-1] == x_before[-1] and x_after != x_before


def thanos_deleted(chunks: list[tuple[int, int]], lo: int, hi: int) -> str:
    """What Thanos logs for one deletion interval: whole chunks inside it, the cut part of the others."""
    parts: list[tuple[int, int]] = []
    for a, b in chunks:
        if lo <= a and b <= hi:
            parts.append((a, b))
        elif a <= hi and lo <= b:
            parts.append((max(a, lo), min(b, hi)))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(parts):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return "[" + " ".join(f"{{{a} {b}}}" for a, b in merged) + "]"


def test_change_log_lists_every_change(tmp_path: Path) -> None:
    data = series_data()
    src = write_block(tmp_path / "src", data)
    x_chunks = [(int(sc.chunks.mint[j]), int(sc.chunks.maxt[j])) for sc in each_series(Block.open_dir(str(src)))
                if sc.labels.labels(0) == L(__name__="http", job="a", path="/x") for j in range(len(sc.chunks))]
    res = rewrite_block(Block.open_dir(str(src)), spec(), str(tmp_path / "out"))
    assert res.path is not None
    lines = (Path(res.path) / "change.log").read_text().splitlines()
    first, last = START, START + 6 * HOUR - 15_000
    assert len(x_chunks) > 4
    assert lines == [
        f'Deleted {{__name__="drop_me", job="a"}} [{{{first} {last}}}]',
        'Relabelled {__name__="http", job="b", path="/y"} {__name__="http", job="c", path="/y"}',
        'Relabelled {__name__="http", job="b", path="/z"} {__name__="http", job="c", path="/z"}',
        'Relabelled {__name__="up", instance="1", job="a"} {__name__="up", job="a"}',
        'Relabelled {__name__="up", instance="2", job="a"} {__name__="up", job="a"}',
        'Deleted {__name__="http", job="a", path="/x"} ' + thanos_deleted(x_chunks, START + HOUR, START + 2 * HOUR - 1),
        f'Deleted {{__name__="http", job="c", path="/z"}} [{{{first} {last}}}]',
    ]
    assert res.changes == lines


def test_rewritten_meta(tmp_path: Path) -> None:
    src = write_block(tmp_path / "src", series_data())
    old = BlockMeta.from_json((src / "meta.json").read_bytes())
    res = rewrite_block(Block.open_dir(str(src)), spec(), str(tmp_path / "out"))
    assert res.meta is not None and res.path is not None
    doc = json.loads((Path(res.path) / "meta.json").read_text())
    assert doc["ulid"] == res.meta.ulid != old.ulid
    assert doc["compaction"]["sources"] == [res.meta.ulid] and doc["compaction"]["level"] == old.level
    assert (doc["minTime"], doc["maxTime"]) == (old.min_time, old.max_time)
    assert doc["stats"] == {"numSamples": res.stats.samples_out, "numSeries": 4, "numChunks": res.stats.chunks_out}
    assert doc["thanos"]["source"] == "bucket.rewrite" and doc["thanos"]["labels"] == {"cluster": "eu1"}
    (entry,) = doc["thanos"]["rewrites"]
    assert entry["sources"] == old.sources
    assert entry["relabels_applied"][0] == {"separator": ";", "regex": "instance", "replacement": "$1",
                                            "action": "labeldrop"}
    assert entry["deletions_applied"][1] == {"matchers": [{"Type": 0, "Name": "job", "Value": "c"},
                                                          {"Type": 0, "Name": "path", "Value": "/z"}]}
    assert doc["thanos"]["segment_files"] == sorted(os.listdir(Path(res.path) / "chunks"))


def test_dry_run_writes_nothing_and_counts_the_same(tmp_path: Path) -> None:
    src = write_block(tmp_path / "src", series_data())
    dry = rewrite_block(Block.open_dir(str(src)), spec(), None)
    real = rewrite_block(Block.open_dir(str(src)), spec(), str(tmp_path / "out"))
    assert dry.meta is None and dry.stats == real.stats and dry.changes == real.changes


def test_everything_deleted_writes_no_block(tmp_path: Path) -> None:
    src = write_block(tmp_path / "src", series_data())
    res = rewrite_block(Block.open_dir(str(src)), spec("", "- matchers: '{job=~\".+\"}'\n"), str(tmp_path / "out"))
    assert res.meta is None and res.stats.series_out == 0 and not os.listdir(tmp_path / "out")


def test_tombstones_of_the_source_are_applied(tmp_path: Path) -> None:
    from thanostools.core.tsdb.tombstones import encode_tombstones

    data = series_data()
    src = write_block(tmp_path / "src", data)
    block = Block.open_dir(str(src))
    keep_ref = int(next(sc.refs[0] for sc in each_series(block) if sc.labels.labels(0) == L(__name__="keep", job="a")))
    (src / "tombstones").write_bytes(encode_tombstones({keep_ref: [(START, START + HOUR)]}))
    res = rewrite_block(Block.open_dir(str(src)), spec(), str(tmp_path / "out"))
    kept = dump(res.path or "")[L(__name__="keep", job="a")]
    assert min(kept) > START + HOUR and len(kept) == data[L(__name__="keep", job="a")][0].shape[0] - 241


# --- downsampled blocks -----------------------------------------------------------------------------------


@pytest.fixture
def downsampled(tmp_path: Path) -> tuple[Path, dict[Labels, tuple[np.ndarray, np.ndarray]]]:
    data = series_data(hours=48)
    raw = write_block(tmp_path / "raw", data, hours=48)
    meta = downsample_block(Block.open_dir(str(raw)), 300_000, str(tmp_path / "5m"))
    return tmp_path / "5m" / meta.ulid, data


def expected_aggr(path: Path, aggregate: Aggr,
                  deletions: dict[Labels, list[tuple[int, int]]]) -> dict[Labels, dict[int, float]]:
    """Per aggregate: relabel, chain (first input wins), drop samples in deleted intervals."""
    out: dict[Labels, dict[int, float]] = {}
    for lab, samples in sorted(dump(path, aggregate).items()):
        new = expected_labels(lab)
        if new is None:
            continue
        merged = out.setdefault(new, {})
        for t, v in samples.items():
            merged.setdefault(t, v)
    result = {}
    for lab, s in out.items():
        dels = deletions.get(lab)
        if dels == []:
            continue
        result[lab] = {t: v for t, v in sorted(s.items()) if not any(a <= t <= b for a, b in dels or [])}
    return result


def test_downsampled_rewrite_per_aggregate(tmp_path: Path,
                                            downsampled: tuple[Path, dict[Labels, tuple[np.ndarray, np.ndarray]]]
                                            ) -> None:
    path, _ = downsampled
    res = rewrite_block(Block.open_dir(str(path)), spec(), str(tmp_path / "out"))
    assert res.path is not None and res.meta is not None and res.meta.resolution == 300_000
    deletions = {lab: d for lab in map(expected_labels, dump(path)) if lab and (d := expected_deleted(lab)) is not None}
    for agg in (Aggr.COUNT, Aggr.SUM, Aggr.MIN, Aggr.MAX):
        assert dump(res.path, agg) == expected_aggr(path, agg, deletions), agg
    # Series that were only relabelled keep their AggrChunks byte for byte, counter included.
    before, after = chunk_bytes(path), chunk_bytes(Path(res.path))
    assert after[L(__name__="http", job="c", path="/y")] == before[L(__name__="http", job="b", path="/y")]
    assert dump(res.path, Aggr.COUNTER)[L(__name__="keep", job="a")] == dump(path, Aggr.COUNTER)[
        L(__name__="keep", job="a")]


Downsampled = tuple[Path, dict[Labels, tuple[np.ndarray, np.ndarray]]]


def test_deleted_interval_leaves_no_aggregate_sample(tmp_path: Path, downsampled: Downsampled) -> None:
    path, _ = downsampled
    lo, hi = START + 10 * HOUR, START + 13 * HOUR - 1
    res = rewrite_block(Block.open_dir(str(path)), spec("", f"- matchers: '{{__name__=\"keep\"}}'\n"
                                                            f"  intervals: [{{mint: {lo}, maxt: {hi}}}]\n"),
                        str(tmp_path / "out"))
    assert res.path is not None
    for agg in Aggr:
        left = dump(res.path, agg)[L(__name__="keep", job="a")]
        assert not any(lo <= t <= hi for t in left)
        assert left == {t: v for t, v in dump(path, agg)[L(__name__="keep", job="a")].items() if not lo <= t <= hi}
    assert res.stats.series_trimmed == 1 and res.stats.chunks_reencoded >= 1


# --- external labels, groups, resumability ----------------------------------------------------------------


def bucket_with_blocks(tmp_path: Path) -> tuple[Path, list[Path]]:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    data = series_data(hours=2)
    blocks = [write_block(bucket, data, hours=2, labels={"cluster": c, "replica": r}) for c, r in
              (("eu1", "0"), ("eu1", "1"), ("us1", "0"))]
    return bucket, blocks


def test_group_merge_preview(tmp_path: Path) -> None:
    bucket, blocks = bucket_with_blocks(tmp_path)
    infos = BucketWorkspace.open(str(bucket)).blocks()
    merges = preview_group_merges(infos, [b.name for b in blocks], RewriteSpec(drop_labels=("replica",)))
    assert [(m.labels, m.merged_from, m.blocks) for m in merges] == [
        ({"cluster": "eu1"}, [{"cluster": "eu1", "replica": "0"}, {"cluster": "eu1", "replica": "1"}], 2)]
    assert preview_group_merges(infos, [blocks[2].name], RewriteSpec(set_labels=(("cluster", "eu1"),
                                                                                  ("replica", "1")))) != []


def test_external_label_edit_is_a_byte_copy(tmp_path: Path) -> None:
    bucket, blocks = bucket_with_blocks(tmp_path)
    engine = BucketWorkspace.open(str(bucket))
    report = rewrite_bucket(engine, RewriteSpec(set_labels=(("cluster", "eu2"),), drop_labels=("replica",)),
                            block_filter=BlockFilter(ids=(blocks[0].name,)), dry_run=False)
    (rep,) = report.blocks
    assert rep.status == "rewritten" and rep.marked and rep.labels_after == {"cluster": "eu2"}
    new = bucket / str(rep.new_ulid)
    assert filecmp.cmp(new / "index", blocks[0] / "index", shallow=False)
    assert filecmp.cmp(new / "chunks" / "000001", blocks[0] / "chunks" / "000001", shallow=False)
    meta = BlockMeta.from_json((new / "meta.json").read_bytes())
    old = BlockMeta.from_json((blocks[0] / "meta.json").read_bytes())
    assert meta.thanos is not None and meta.thanos.labels == {"cluster": "eu2"}
    assert meta.sources == old.sources and meta.thanos.rewrites == [{"sources": old.sources}]
    assert (blocks[0] / "deletion-mark.json").exists()


def test_bucket_rewrite_dry_run_then_real_then_rerun(tmp_path: Path) -> None:
    bucket, blocks = bucket_with_blocks(tmp_path)
    before = sorted(os.listdir(bucket))
    sp = spec()
    dry = rewrite_bucket(BucketWorkspace.open(str(bucket)), sp)
    assert sorted(os.listdir(bucket)) == before and [b.status for b in dry.blocks] == ["would-rewrite"] * 3
    real = rewrite_bucket(BucketWorkspace.open(str(bucket)), sp, dry_run=False)
    assert [b.status for b in real.blocks] == ["rewritten"] * 3 and all(b.marked for b in real.blocks)
    assert all((b / "deletion-mark.json").exists() for b in blocks)
    again = rewrite_bucket(BucketWorkspace.open(str(bucket)), sp, dry_run=False)
    assert [b.status for b in again.blocks] == ["is-rewrite-output"] * 3
    assert len(os.listdir(bucket)) == 6


def test_interrupted_rewrite_resumes_without_duplicates(tmp_path: Path) -> None:
    bucket, blocks = bucket_with_blocks(tmp_path)
    sp = spec()
    # The first run uploaded the new blocks but stopped before marking the originals.
    first = rewrite_bucket(BucketWorkspace.open(str(bucket)), sp, dry_run=False, mark_original=False)
    # A second, interrupted upload left a partial block (no meta.json) behind.
    partial = bucket / "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    shutil.copytree(Path(blocks[0]) / "chunks", partial / "chunks")
    resumed = rewrite_bucket(BucketWorkspace.open(str(bucket)), sp, dry_run=False)
    by_source = {b.source: b for b in resumed.blocks}
    for old in first.blocks:
        rep = by_source[old.source]
        assert rep.status == "already-rewritten" and rep.new_ulid == old.new_ulid and rep.marked
    assert all((b / "deletion-mark.json").exists() for b in blocks)
    assert len([d for d in os.listdir(bucket) if (bucket / d / "meta.json").exists()]) == 6


def test_find_rewrite_and_output_detection(tmp_path: Path) -> None:
    bucket, blocks = bucket_with_blocks(tmp_path)
    sp = spec()
    rewrite_bucket(BucketWorkspace.open(str(bucket)), sp, dry_run=False, mark_original=False,
                   block_filter=BlockFilter(ids=(blocks[0].name,)))
    infos = BucketWorkspace.open(str(bucket)).blocks()
    src = next(b for b in infos if b.ulid == blocks[0].name)
    found = find_rewrite(src.meta, sp, {"cluster": "eu1", "replica": "0"}, infos)
    assert found is not None and is_rewrite_output(found.meta, sp, {"cluster": "eu1", "replica": "0"})
    assert find_rewrite(src.meta, spec(delete=""), {"cluster": "eu1", "replica": "0"}, infos) is None
    assert not is_rewrite_output(src.meta, sp, {"cluster": "eu1", "replica": "0"})


def test_nothing_to_do_and_conflicting_labels() -> None:
    with pytest.raises(ConfigError, match="nothing to do"):
        rewrite_bucket(BucketWorkspace.open("memory://empty-rewrite"), RewriteSpec())
    with pytest.raises(ConfigError, match="both set and dropped"):
        RewriteSpec(set_labels=(("a", "1"),), drop_labels=("a",))
    with pytest.raises(ConfigError, match="not a valid label name"):
        RewriteSpec(set_labels=(("a-b", "1"),))
