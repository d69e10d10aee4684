"""BlockQuerier over buckets written by our BlockWriter: external labels, merging, ranges, dedup, downsampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from thanostools.core.catalog import CompactionLeftovers
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import AGGR_ENCODING, Aggr, build_aggr
from thanostools.core.dedup import deduplicated
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.partial import PartialBlockQuerier, PartialResponse
from thanostools.core.querier import BlockQuerier, aggregate_for, choose_blocks, effective_resolution
from thanostools.core.series import Querier, SampleBatch, SelectHints
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace

H = 3_600_000
M5 = 300_000
XOR_ENC = 1
SeriesData = tuple[Labels, Sequence[int], Sequence[float]]


def lab(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def write_raw(bucket: Path, series: Sequence[SeriesData], *, ext: Mapping[str, str] | None = None,
              min_time: int | None = None, max_time: int | None = None) -> str:
    w = BlockWriter(str(bucket), external_labels=ext, min_time=min_time, max_time=max_time)
    for labels, t, v in sorted(series, key=lambda s: s[0]):
        w.add_samples(labels, np.array(t, np.int64), np.array(v, np.float64))
    return w.finish().ulid


def downsample(t: Sequence[int], v: Sequence[float], res: int) -> dict[Aggr, list[tuple[int, float]]]:
    """§7.4 for one batch (one AggrChunk) of raw float samples."""
    out: dict[Aggr, list[tuple[int, float]]] = {a: [] for a in Aggr}
    out[Aggr.COUNTER].append((t[0], v[0]))
    windows: dict[int, list[float]] = {}
    counter, last = v[0], v[0]
    totals: dict[int, float] = {}
    for ti, vi in zip(t, v, strict=True):
        w = min(ti - ti % res + res - 1, t[-1])
        windows.setdefault(w, []).append(vi)
        if ti != t[0]:
            counter += vi if vi < last else vi - last
        last = vi
        totals[w] = counter
    for w, vals in windows.items():
        out[Aggr.COUNT].append((w, len(vals)))
        out[Aggr.SUM].append((w, sum(vals)))
        out[Aggr.MIN].append((w, min(vals)))
        out[Aggr.MAX].append((w, max(vals)))
        out[Aggr.COUNTER].append((w, totals[w]))
    out[Aggr.COUNTER].append((max(windows), v[-1]))
    return out


def write_downsampled(bucket: Path, series: Sequence[SeriesData], res: int, *, ext: Mapping[str, str] | None = None,
                      min_time: int | None = None, max_time: int | None = None, chunks: int = 1) -> str:
    """A block of AggrChunks (``chunks`` per series, split at window boundaries)."""
    w = BlockWriter(str(bucket), external_labels=ext, resolution=res, min_time=min_time, max_time=max_time)
    for labels, t, v in sorted(series, key=lambda s: s[0]):
        payloads: list[bytes] = []
        mints: list[int] = []
        maxts: list[int] = []
        n = 0
        for part in np.array_split(np.arange(len(t)), chunks):
            pt, pv = [t[i] for i in part], [v[i] for i in part]
            aggs = downsample(pt, pv, res)
            subs: list[tuple[int, bytes] | None] = [
                (XOR_ENC, xor.encode(np.array([s[0] for s in aggs[a]], np.int64),
                                     np.array([s[1] for s in aggs[a]], np.float64))) for a in Aggr]
            payloads.append(build_aggr(subs))
            mints.append(aggs[Aggr.COUNT][0][0])
            maxts.append(aggs[Aggr.COUNT][-1][0])
            n += len(aggs[Aggr.COUNT])
        buf = np.frombuffer(b"".join(payloads), np.uint8)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in payloads])]).astype(np.int64)
        w.add_chunks(labels, np.full(len(payloads), AGGR_ENCODING, np.int64), buf, offsets,
                     np.array(mints, np.int64), np.array(maxts, np.int64), n)
    return w.finish().ulid


def as_dict(batch: SampleBatch) -> dict[Labels, list[tuple[int, float]]]:
    out = {}
    for i in range(len(batch)):
        labels, t, v = batch.series(i)
        out[labels] = list(zip(t.tolist(), v.view(np.float64).tolist(), strict=True))
    return out


def select(q: Querier, *matchers: Matcher, mint: int = 0, maxt: int = 10**13, func: str = "",
           rng: int = 0) -> dict[Labels, list[tuple[int, float]]]:
    hints = SelectHints(start=mint, end=maxt, func=func, range=rng)
    batch = q.select(list(matchers), mint, maxt, hints).collect()
    assert batch.labels == sorted(batch.labels)
    return as_dict(batch)


def name(n: str) -> Matcher:
    return Matcher.eq("__name__", n)


def querier(bucket: Path, *, dedup: bool = False, replica_labels: Sequence[str] = (), external_labels: bool = True,
            **kw: int) -> Querier:
    """The bucket as ``query`` reads it: leftovers filtered, failing blocks under the partial-response policy,
    replicas merged on request."""
    catalog = BucketWorkspace.open(str(bucket)).catalog.view(CompactionLeftovers())
    blocks = PartialBlockQuerier(catalog, lambda view: BlockQuerier(view, external_labels=external_labels, **kw),
                                 PartialResponse())
    return deduplicated(blocks, replica_labels, dedup)


# --- external labels, merging, ranges ------------------------------------------------------------


def test_external_labels_are_added_win_and_match(tmp_path: Path) -> None:
    write_raw(tmp_path, [(lab(__name__="up", job="a", site="series"), [1000, 2000], [1, 2])],
              ext={"site": "east", "env": "prod"})
    write_raw(tmp_path, [(lab(__name__="up", job="a"), [1000], [5])], ext={"site": "west"})
    q = querier(tmp_path)
    got = select(q, name("up"))
    assert got == {
        lab(__name__="up", env="prod", job="a", site="east"): [(1000, 1.0), (2000, 2.0)],
        lab(__name__="up", job="a", site="west"): [(1000, 5.0)],
    }
    assert list(select(q, name("up"), Matcher.eq("site", "west"))) == [lab(__name__="up", job="a", site="west")]
    assert list(select(q, Matcher(MatchType.RE, "env", "pro.*"))) == [
        lab(__name__="up", env="prod", job="a", site="east")]
    # the series' own site="series" is hidden by the external label
    assert select(q, Matcher.eq("site", "series")) == {}
    assert list(select(q, name("up"), Matcher.eq("env", ""))) == [lab(__name__="up", job="a", site="west")]
    raw = querier(tmp_path, external_labels=False)
    assert set(select(raw, name("up"))) == {lab(__name__="up", job="a", site="series"), lab(__name__="up", job="a")}


def test_series_are_sorted_after_adding_external_labels(tmp_path: Path) -> None:
    write_raw(tmp_path, [(lab(a="1"), [1], [1]), (lab(a="1", b="0"), [1], [2])], ext={"c": "5"})
    got = querier(tmp_path).select([], 0, 10).collect().labels
    assert got == [lab(a="1", b="0", c="5"), lab(a="1", c="5")]


def test_blocks_are_merged_and_equal_timestamps_kept_once(tmp_path: Path) -> None:
    s = lab(__name__="m", i="0")
    write_raw(tmp_path, [(s, [0, 1000, 2000], [0, 1, 2])], min_time=0, max_time=2 * H)
    write_raw(tmp_path, [(s, [2000, 3000], [20, 3])], min_time=2000, max_time=2 * H)
    write_raw(tmp_path, [(s, [2 * H, 2 * H + 1000], [7, 8]), (lab(__name__="m", i="1"), [2 * H], [9])],
              min_time=2 * H, max_time=4 * H)
    got = select(querier(tmp_path), name("m"))
    assert [t for t, _ in got[s]] == [0, 1000, 2000, 3000, 2 * H, 2 * H + 1000]
    assert got[s][2][1] in (2.0, 20.0)
    assert got[lab(__name__="m", i="1")] == [(2 * H, 9.0)]


def test_time_range_is_closed_and_querier_bounds_apply(tmp_path: Path) -> None:
    s = lab(__name__="m")
    write_raw(tmp_path, [(s, list(range(0, 10000, 1000)), list(range(10)))])
    assert [t for t, _ in select(querier(tmp_path), mint=2000, maxt=4000)[s]] == [2000, 3000, 4000]
    bounded = querier(tmp_path, min_time=3000, max_time=5000)
    assert [t for t, _ in select(bounded, mint=0, maxt=9000)[s]] == [3000, 4000, 5000]
    assert select(bounded, mint=6000, maxt=9000) == {}
    assert select(querier(tmp_path), mint=20000, maxt=30000) == {}


def test_label_names_and_values(tmp_path: Path) -> None:
    write_raw(tmp_path, [(lab(__name__="up", job="a"), [1000], [1]), (lab(__name__="cpu", mode="idle"), [1000], [1])],
              ext={"replica": "r0"}, min_time=0, max_time=H)
    write_raw(tmp_path, [(lab(__name__="up", job="b"), [H + 1000], [1])], ext={"replica": "r1"},
              min_time=H, max_time=2 * H)
    q = querier(tmp_path)
    assert q.label_names([], 0, 2 * H).values == ["__name__", "job", "mode", "replica"]
    assert q.label_names([name("up")], 0, 2 * H).values == ["__name__", "job", "replica"]
    assert q.label_names([name("cpu")], 0, 2 * H).values == ["__name__", "mode", "replica"]
    assert q.label_names([name("up")], H + 5000, 2 * H).values == []  # the series' chunks end earlier
    assert q.label_values("job", [], 0, 2 * H).values == ["a", "b"]
    assert q.label_values("job", [], 0, H - 1).values == ["a"]
    assert q.label_values("replica", [name("up"), Matcher.eq("job", "b")], 0, 2 * H).values == ["r1"]
    assert q.label_values("replica", [Matcher.eq("replica", "r0")], 0, 2 * H).values == ["r0"]
    assert q.label_values("nope", [], 0, 2 * H).values == []
    dq = querier(tmp_path, dedup=True, replica_labels=["replica"])
    assert dq.label_names([], 0, 2 * H).values == ["__name__", "job", "mode"]
    assert dq.label_values("replica", [], 0, 2 * H).values == []


# --- dedup -----------------------------------------------------------------------------------------


def test_dedup_merges_replicas_and_fills_gaps(tmp_path: Path) -> None:
    s = lab(__name__="up", job="a")
    ta = [0, 10000, 20000, 30000, 90000, 100000]
    tb = [5000, 15000, 25000, 35000, 45000, 55000, 65000, 75000, 85000, 95000]
    write_raw(tmp_path, [(s, ta, [1.0] * len(ta))], ext={"replica": "a"})
    write_raw(tmp_path, [(s, tb, [2.0] * len(tb))], ext={"replica": "b"})
    assert len(select(querier(tmp_path), name("up"))) == 2
    got = select(querier(tmp_path, dedup=True, replica_labels=["replica"]), name("up"))
    assert list(got) == [s]
    # replica a until its gap, then b (a's samples closer than the penalty are skipped)
    assert got[s] == [(0, 1.0), (10000, 1.0), (20000, 1.0), (30000, 1.0), (55000, 2.0), (65000, 2.0),
                      (75000, 2.0), (85000, 2.0), (95000, 2.0)]
    # without replica labels dedup does nothing
    assert len(select(querier(tmp_path, dedup=True), name("up"))) == 2


def test_dedup_counter_adjustment_only_for_counter_functions(tmp_path: Path) -> None:
    s = lab(__name__="reqs_total")
    write_raw(tmp_path, [(s, [0, 10000, 20000, 30000], [100, 101, 102, 103])], ext={"replica": "a"})
    write_raw(tmp_path, [(s, [70000, 80000, 90000, 100000], [3, 4, 5, 6])], ext={"replica": "b"})
    q = querier(tmp_path, dedup=True, replica_labels=["replica"])
    plain = [v for _, v in select(q, func="")[s]]
    assert plain == [100, 101, 102, 103, 3, 4, 5, 6]
    adjusted = [v for _, v in select(q, func="rate", rng=60000)[s]]
    assert adjusted == [100, 101, 102, 103, 103, 104, 105, 106]


def test_dedup_three_replicas_fold(tmp_path: Path) -> None:
    s = lab(__name__="g")
    for r, offset in (("a", 0), ("b", 1000), ("c", 2000)):
        write_raw(tmp_path, [(s, [offset + 15000 * i for i in range(4)], [ord(r)] * 4)], ext={"replica": r})
    got = select(querier(tmp_path, dedup=True, replica_labels=["replica"]))[s]
    assert [v for _, v in got] == [ord("a")] * 4


# --- downsampled blocks ----------------------------------------------------------------------------

RAW_T = [i * 60000 + 1000 for i in range(30)]  # 30 minutes of 1-minute samples
RAW_V = [float(i % 7) for i in range(30)]
COUNTER_V = [float(v) for v in [*range(10, 25), *range(0, 15)]]  # a reset at minute 15


@pytest.fixture
def ds_bucket(tmp_path: Path) -> Path:
    g, c = lab(__name__="gauge"), lab(__name__="ctr_total")
    write_downsampled(tmp_path, [(g, RAW_T, RAW_V), (c, RAW_T, COUNTER_V)], M5, min_time=0, max_time=H, chunks=2)
    return tmp_path


def test_aggregate_choice_by_function() -> None:
    assert aggregate_for("min_over_time") == Aggr.MIN and aggregate_for("min") == Aggr.MIN
    assert aggregate_for("max") == Aggr.MAX and aggregate_for("count_values") == Aggr.COUNT
    assert aggregate_for("sum_over_time") == Aggr.SUM
    assert aggregate_for("sum") == "avg" and aggregate_for("") == "avg" and aggregate_for("delta") == "avg"
    assert aggregate_for("rate") == Aggr.COUNTER and aggregate_for("resets") == Aggr.COUNTER
    assert effective_resolution(H, SelectHints(0, 0, func="rate", range=10 * 60000)) == M5
    assert effective_resolution(H, SelectHints(0, 0, func="avg_over_time", range=10 * 60000)) == H
    assert effective_resolution(0, SelectHints(0, 0, func="rate", range=10 * 60000)) == 0


def test_downsampled_blocks_need_a_resolution_window(ds_bucket: Path) -> None:
    assert select(querier(ds_bucket)) == {}
    assert len(select(querier(ds_bucket, max_source_resolution_ms=M5))) == 2


def test_downsampled_aggregates_read_back(ds_bucket: Path) -> None:
    q = querier(ds_bucket, max_source_resolution_ms=H)
    g = lab(__name__="gauge")
    halves = [downsample(RAW_T[:15], RAW_V[:15], M5), downsample(RAW_T[15:], RAW_V[15:], M5)]

    def expected(a: Aggr) -> list[tuple[int, float]]:
        return [(t, float(v)) for h in halves for t, v in h[a]]

    assert select(q, name("gauge"), func="min_over_time")[g] == expected(Aggr.MIN)
    assert select(q, name("gauge"), func="max")[g] == expected(Aggr.MAX)
    assert select(q, name("gauge"), func="count_over_time")[g] == expected(Aggr.COUNT)
    assert select(q, name("gauge"), func="sum_over_time")[g] == expected(Aggr.SUM)
    avg = [(t, s / c) for (t, s), (_, c) in zip(expected(Aggr.SUM), expected(Aggr.COUNT), strict=True)]
    assert select(q, name("gauge"), func="avg_over_time")[g] == avg
    assert select(q, name("gauge"))[g] == avg
    assert select(q, name("gauge"), func="sum")[g] == avg
    assert select(q, name("gauge"), mint=10 * 60000, maxt=20 * 60000, func="max")[g] == [
        p for p in expected(Aggr.MAX) if 10 * 60000 <= p[0] <= 20 * 60000]


def test_downsampled_counter_hides_resets_across_chunks(ds_bucket: Path) -> None:
    q = querier(ds_bucket, max_source_resolution_ms=M5)
    got = select(q, name("ctr_total"), func="rate", rng=20 * 60000)[lab(__name__="ctr_total")]
    values = [v for _, v in got]
    assert values == sorted(values)  # monotone: the reset between chunks is folded in
    assert got[0] == (RAW_T[0], 10.0)
    assert values[-1] == 24.0 + 14.0  # 10→24 (+14), reset to 0, then 0→14 (+14)
    # a later start keeps the increases (only the counter's base may differ)
    late = select(q, name("ctr_total"), mint=20 * 60000, func="rate", rng=20 * 60000)[lab(__name__="ctr_total")]
    same = [p for p in got if p[0] >= 20 * 60000]
    assert [t for t, _ in late] == [t for t, _ in same]
    assert np.diff([v for _, v in late]).tolist() == np.diff([v for _, v in same]).tolist()


def test_resolution_choice_fills_gaps_with_finer_blocks(tmp_path: Path) -> None:
    s = lab(__name__="m")
    raw_t = [i * 60000 for i in range(0, 240)]  # 4h of raw data in two blocks
    write_raw(tmp_path, [(s, raw_t[:120], [1.0] * 120)], min_time=0, max_time=2 * H)
    write_raw(tmp_path, [(s, raw_t[120:], [1.0] * 120)], min_time=2 * H, max_time=4 * H)
    write_downsampled(tmp_path, [(s, raw_t[:120], [1.0] * 120)], M5, min_time=0, max_time=2 * H)
    q5 = querier(tmp_path, max_source_resolution_ms=M5)
    got = select(q5, func="count_over_time")[s]
    before = [p for p in got if p[0] < 2 * H]
    after = [p for p in got if p[0] >= 2 * H]
    assert before == [(t + M5 - 1 if t + M5 < 2 * H else raw_t[119], 5.0) for t in range(0, 2 * H, M5)]
    assert after == [(t, 1.0) for t in raw_t[120:]]  # the gap is filled from the raw block
    # rate over a short range lowers the window to raw
    got_rate = select(querier(tmp_path, max_source_resolution_ms=H), func="rate", rng=5 * 60000)[s]
    assert [t for t, _ in got_rate] == raw_t


def test_choose_blocks_is_per_external_label_set(tmp_path: Path) -> None:
    s = lab(__name__="m")
    write_raw(tmp_path, [(s, [0], [1])], ext={"r": "a"}, min_time=0, max_time=2 * H)
    write_downsampled(tmp_path, [(s, [0, 60000], [1, 1])], M5, ext={"r": "b"}, min_time=0, max_time=2 * H)
    infos = BucketWorkspace.open(str(tmp_path)).blocks()
    chosen = choose_blocks(infos, 0, 2 * H, M5)
    assert sorted(b.meta.resolution for b in chosen) == [0, M5]


def test_compaction_leftovers_are_ignored(tmp_path: Path) -> None:
    s = lab(__name__="m")
    a = write_raw(tmp_path, [(s, [0], [1])], min_time=0, max_time=H)
    w = BlockWriter(str(tmp_path), min_time=0, max_time=2 * H, level=2, sources=[a, "01BX5ZZKBKACTAV9WEVGEMMVRZ"])
    w.add_samples(s, np.array([0, H], np.int64), np.array([1.0, 2.0]))
    w.finish()
    infos = BucketWorkspace.open(str(tmp_path)).catalog.view(CompactionLeftovers()).blocks()
    assert len(choose_blocks(infos, 0, 2 * H, 0)) == 1


def test_unreadable_blocks_become_warnings(tmp_path: Path) -> None:
    s = lab(__name__="m")
    write_raw(tmp_path, [(s, [0], [1])])
    broken = write_raw(tmp_path, [(s, [1000], [2])])
    (tmp_path / broken / "meta.json").write_text("{not json")
    res = querier(tmp_path).select([], 0, 10_000)
    assert as_dict(res.collect()) == {s: [(0, 1.0)]}
    assert len(res.warnings) == 1 and res.warnings[0].startswith(f"block {broken} skipped: ")
