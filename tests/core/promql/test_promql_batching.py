"""Batched evaluation: selections stream through the evaluator in batches of series, and the batch size
never changes a result (tiny batches against one batch), nor what the querier returns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.sharedfiles import promqltest_scripts
from thanostools.core.chunkenc import xor
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import CorruptBlockError, EvalError
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.promql.engine import PromQLEngine, QueryOptions, QueryResult, QueryStats
from thanostools.core.promql.evaluator import Evaluator
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.promql.parser.ast import NumberLiteral
from thanostools.core.promql.selection import RowSink
from thanostools.core.promql.testrunner import run_files
from thanostools.core.querier import BlockQuerier, choose_blocks
from thanostools.core.series import SampleBatch
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.tombstones import encode_tombstones
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace

H = 3_600_000
STEP = 15_000
OURS = Path(__file__).resolve().parent / "testdata"
STALE = float(np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0])


def lab(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


# --- conformance scripts with tiny batches --------------------------------------------------------


def test_conformance_scripts_pass_with_tiny_batches() -> None:
    scripts = promqltest_scripts() + sorted(OURS.glob("*.test"))
    whole = run_files(scripts)
    for size in (1, 7):
        summary = run_files(scripts, QueryOptions(batch_samples=size))
        assert (summary.passed, summary.failed, summary.skipped) == (whole.passed, 0, whole.skipped)


# --- a bucket with every merging case --------------------------------------------------------------


def _write(root: Path, series: Sequence[tuple[Labels, np.ndarray, np.ndarray]], *, ext: dict[str, str] | None = None,
           min_time: int, max_time: int) -> str:
    w = BlockWriter(str(root), external_labels=ext, min_time=min_time, max_time=max_time)
    for labels, t, v in sorted(series, key=lambda s: s[0]):
        w.add_samples(labels, t, v)
    return w.finish().ulid


def _counter(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    v = np.cumsum(rng.integers(0, 20, t.shape[0])).astype(np.float64)
    v[t.shape[0] // 2 :] -= v[t.shape[0] // 2]  # a reset
    return v


def _overlapping_chunks(root: Path, labels: Labels, t: np.ndarray, v: np.ndarray, ext: dict[str, str]) -> None:
    """A block whose one series has two chunks overlapping in time (as vertical compaction can leave)."""
    w = BlockWriter(str(root), external_labels=ext, min_time=int(t[0]), max_time=int(t[-1]) + 1)
    first, second = xor.encode(t[::2], v[::2]), xor.encode(t[1::2], v[1::2] + 0.5)
    buf = np.frombuffer(first + second, np.uint8)
    offsets = np.array([0, len(first), len(first) + len(second)], np.int64)
    w.add_chunks(labels, np.array([1, 1], np.int64), buf, offsets, np.array([t[0], t[1]], np.int64),
                 np.array([t[-2], t[-1]], np.int64), t.shape[0])
    w.finish()


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bucket")
    rng = np.random.default_rng(7)
    t1 = np.arange(0, 2 * H, STEP, dtype=np.int64)
    t2 = np.arange(2 * H, 4 * H, STEP, dtype=np.int64)
    names = [lab(__name__="req_total", job=j, instance=str(i), le=le) for j in ("api", "db") for i in range(6)
             for le in ("0.1", "1", "+Inf")]
    one = [(s, t1, _counter(rng, t1)) for s in names]
    one.append((lab(__name__="gauge", job="api"), t1, rng.normal(size=t1.shape[0])))
    churned = [(s, t2, _counter(rng, t2)) for s in names[3:]]
    churned.append((lab(__name__="late", job="db"), t2, rng.normal(size=t2.shape[0])))
    stale = rng.normal(size=t2.shape[0])
    stale[100:140] = STALE
    churned.append((lab(__name__="gauge", job="api"), t2, stale))
    _write(root, one, min_time=0, max_time=2 * H)
    _write(root, churned, min_time=2 * H, max_time=4 * H)
    # overlaps the first block and repeats some of its timestamps with other values
    t3 = np.arange(H, 2 * H + 30 * STEP, 2 * STEP, dtype=np.int64)
    _write(root, [(names[0], t3, np.full(t3.shape[0], 5.0)), (names[5], t3, _counter(rng, t3))],
           min_time=H, max_time=2 * H + 30 * STEP + 1)
    # external labels that collapse two series into one label set, and overlapping chunks in one series
    ext = {"region": "eu", "instance": "x"}
    _write(root, [(lab(__name__="req_total", job="ext", instance=str(i)), t1, _counter(rng, t1)) for i in range(2)],
           ext=ext, min_time=0, max_time=2 * H)
    _overlapping_chunks(root, lab(__name__="req_total", job="ovl"), t1[:200], rng.normal(size=200), ext)
    _tombstone(root)
    return root


def _tombstone(root: Path) -> None:
    """Deletes a stretch of one series of the block that starts at 2h (the others are read in place)."""
    ulid = next(b.ulid for b in BucketWorkspace.open(str(root)).blocks() if b.meta.min_time == 2 * H)
    block = Block.open_dir(str(root / ulid))
    refs = block.postings([Matcher.eq("job", "db")])
    stones = {int(refs[0]): [(2 * H + 10 * STEP, 2 * H + 90 * STEP)]}
    (root / ulid / "tombstones").write_bytes(encode_tombstones(stones))


def _querier(bucket: Path) -> BlockQuerier:
    return BlockQuerier(BucketWorkspace.open(str(bucket)).catalog)


def _same(a: SampleBatch, b: SampleBatch) -> None:
    assert a.labels == b.labels
    assert np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(a.t, b.t)
    assert np.array_equal(a.v, b.v)


@pytest.mark.parametrize("matchers", [
    [Matcher(MatchType.RE, "__name__", ".+")],
    [Matcher.eq("__name__", "req_total"), Matcher(MatchType.NRE, "le", "1")],
    [Matcher.eq("job", "ovl")],
])
@pytest.mark.parametrize(("mint", "maxt"), [(0, 4 * H), (H + 7, 2 * H + 13 * STEP - 1), (3 * H, 3 * H)])
@pytest.mark.parametrize("in_place", [True, False])
def test_batches_equal_the_merged_selection(bucket: Path, matchers: list[Matcher], mint: int, maxt: int,
                                            in_place: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_place:
        monkeypatch.setattr(Block, "chunk_spans", lambda *args: None)
    q = _querier(bucket)
    merged = q._select_merged(choose_blocks(q.catalog.blocks(), mint, maxt, 0), matchers, mint, maxt, "avg")
    for size in (1, 50, 1000, 10**9):
        stream = q.select(matchers, mint, maxt, batch_samples=size)
        batches = list(stream)
        assert stream.series_bound >= len(merged)
        if size == 1:
            assert all(len(b) == 1 for b in batches)
        _same(SampleBatch.concat(batches), merged)
    _same(q.select(matchers, mint, maxt).collect(), merged)


def test_batches_cover_the_interesting_cases(bucket: Path) -> None:
    got = _querier(bucket).select([Matcher(MatchType.RE, "__name__", ".+")], 0, 4 * H).collect()
    by_labels = {got.labels[i]: got.series(i) for i in range(len(got))}
    collapsed = lab(__name__="req_total", instance="x", job="ext", region="eu")
    assert np.count_nonzero(np.diff(by_labels[collapsed][1]) <= 0) == 0  # chained, then sorted once
    ovl = by_labels[lab(__name__="req_total", instance="x", job="ovl", region="eu")][1]
    assert ovl.shape[0] == 200 and bool((np.diff(ovl) < 0).any())  # one block: chunks kept as written
    first = by_labels[lab(__name__="req_total", instance="0", job="api", le="+Inf")]
    assert bool((np.diff(first[1]) > 0).all())


# --- queries: one batch against tiny batches -------------------------------------------------------


QUERIES = [
    "req_total", "rate(req_total[5m])", "sum by (job) (rate(req_total[5m]))", "topk(3, rate(req_total[5m]))",
    "bottomk(2, req_total)", 'count({__name__=~".+"})', "max_over_time(rate(req_total[5m])[30m:1m])",
    "histogram_quantile(0.9, sum by (le, job) (rate(req_total[5m])))", "timestamp(gauge)",
    "absent_over_time(late[10m])", "avg_over_time(gauge[10m])", "stddev by (job) (gauge)",
    "quantile_over_time(0.5, req_total[10m])", "increase(req_total[1h])", "last_over_time(gauge[3m])",
    "count_over_time(req_total[1m:20s])", "changes(gauge[20m]) > 3", "deriv(gauge[10m])",
]


def _points(res: QueryResult) -> list[tuple[Labels, list[int], list[int]]]:
    return [(s.labels, s.t.tolist(), np.asarray(s.v, np.float64).view(np.uint64).tolist()) for s in res.series]


@pytest.mark.parametrize("query", QUERIES)
def test_range_queries_do_not_depend_on_the_batch_size(bucket: Path, query: str) -> None:
    q = _querier(bucket)
    whole = PromQLEngine(q, QueryOptions(batch_samples=10**9)).range(query, H // 2 + 7, 4 * H, 60_000)
    assert whole.series
    for size in (1, 333):
        res = PromQLEngine(q, QueryOptions(batch_samples=size)).range(query, H // 2 + 7, 4 * H, 60_000)
        assert _points(res) == _points(whole)
        assert (res.warnings, res.infos) == (whole.warnings, whole.infos)


def test_instant_queries_do_not_depend_on_the_batch_size(bucket: Path) -> None:
    q = _querier(bucket)
    for query in [*QUERIES, "req_total[5m]", "gauge[20m:1m]"]:
        whole = PromQLEngine(q, QueryOptions(batch_samples=10**9)).instant(query, 2 * H + 7)
        tiny = PromQLEngine(q, QueryOptions(batch_samples=1)).instant(query, 2 * H + 7)
        assert _points(tiny) == _points(whole), query


# --- sample limit ----------------------------------------------------------------------------------


def test_sample_limit_counts_what_is_held(bucket: Path) -> None:
    q = _querier(bucket)
    query, start, end = "sum(rate(req_total[5m]))", H, 4 * H
    whole = PromQLEngine(q, QueryOptions(batch_samples=10**9)).range(query, start, end, 60_000)
    batched = PromQLEngine(q, QueryOptions(batch_samples=100)).range(query, start, end, 60_000)
    assert batched.stats.samples_loaded == whole.stats.samples_loaded
    assert batched.stats.peak_samples < whole.stats.peak_samples / 4
    limit = QueryOptions(batch_samples=100, max_samples=batched.stats.peak_samples)
    assert PromQLEngine(q, limit).range(query, start, end, 60_000).series
    # one batch would hold everything (over the limit), but batches shrink under a small limit
    limit = QueryOptions(batch_samples=10**9, max_samples=2 * batched.stats.peak_samples)
    assert PromQLEngine(q, limit).range(query, start, end, 60_000).series
    with pytest.raises(EvalError, match="too many samples"):  # the output alone is over the limit
        PromQLEngine(q, QueryOptions(max_samples=100, batch_samples=1)).range("req_total", start, end, 60_000)


def test_series_limit_reports_the_whole_selection(bucket: Path) -> None:
    q = _querier(bucket)
    total = len(q.select([Matcher.eq("__name__", "req_total")], 0, 4 * H).collect())
    for size in (1, 10**9):
        with pytest.raises(EvalError, match=f"{total} series matched by one selector, limit is 5"):
            PromQLEngine(q, QueryOptions(max_series=5, batch_samples=size)).range("req_total", 0, 4 * H, H)


def test_damaged_chunks_are_reported_by_both_read_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = np.arange(0, H, STEP, dtype=np.int64)
    ulid = _write(tmp_path, [(lab(__name__="m", i=str(i)), t, np.arange(t.shape[0], dtype=np.float64))
                             for i in range(3)], min_time=0, max_time=H)
    seg = tmp_path / ulid / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[20] ^= 0x01
    seg.write_bytes(bytes(data))
    for in_place in (True, False):
        if not in_place:
            monkeypatch.setattr(Block, "chunk_spans", lambda *args: None)
        with pytest.raises(CorruptBlockError, match="checksum mismatch") as exc:
            list(_querier(tmp_path).select([Matcher.eq("__name__", "m")], 0, H))
        assert exc.value.block == ulid and exc.value.file == "chunks/000001"


def _evaluator(max_samples: int) -> Evaluator:
    return Evaluator(MemoryQuerier([], [], []), QueryOptions(max_samples=max_samples), NumberLiteral(1.0), "1",
                     0, 0, 0, QueryStats())


def test_row_sink_drops_empty_rows_and_grows() -> None:
    sink = RowSink(_evaluator(1000), 2, 3, with_ts=True)  # too small on purpose: it has to grow
    rng = np.random.default_rng(1)
    expected: list[tuple[Labels, list[float], list[bool], list[int]]] = []
    for b in range(5):
        vals, pres, sts = sink.rows(3)
        assert not pres.any() and not vals.any() and not sts.any()  # leftovers of dropped rows are cleared
        labels = [lab(b=str(b), r=str(r)) for r in range(3)]
        kept = 0
        for r in range(3):
            if (b + r) % 2:
                continue  # a row without samples
            pres[r] = [True, *(rng.random(2) < 0.7)]
            vals[r] = rng.normal(size=3)
            sts[r] = rng.integers(0, 100, 3)
            kept += 1
            expected.append((labels[r], vals[r].tolist(), pres[r].tolist(), sts[r].tolist()))
        assert sink.commit(labels, np.full(3, b % 2 == 0)) == 3 * kept  # rows are dense: 3 steps each
    vec = sink.vector()
    assert vec.labels == [e[0] for e in expected]
    assert vec.values.tolist() == [e[1] for e in expected]
    assert vec.present.tolist() == [e[2] for e in expected]
    assert vec.sample_ts is not None and vec.sample_ts.tolist() == [e[3] for e in expected]
    assert vec.drop_name.tolist() == [lb[0][1] in ("0", "2", "4") for lb in vec.labels]
