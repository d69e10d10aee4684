"""serve streams selections: its ``PartialBlockQuerier`` (and the fan-out) decode one batch at a time,
and a chunk failing its checksum mid-stream is handled as before: an error without partial response; with
it, the block is left out, the selection resumes after the last series delivered, and the warning reaches
the response although it was found after the query started reading.

The bucket has two blocks (hours 0 and 1) holding the same ten series ``m{i="00".."09"}``; in the second
one, the first chunk of ``m{i="07"}`` (a series that sorts late) is tampered with. With batches of one
series each, series 00..06 are delivered whole before the damage is found."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.server.servehelp import ServeFactory
from thanostools.core.dedup import deduplicated
from thanostools.core.errors import CorruptBlockError
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.partial import PartialBlockQuerier
from thanostools.core.promql.engine import PromQLEngine, QueryOptions, QueryResult
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.querier import BlockQuerier
from thanostools.core.series import Querier, SampleBatch, SeriesStream
from thanostools.core.sources.fanout import FanoutQuerier
from thanostools.core.tsdb.chunks import ref_offset, ref_segment, segment_name
from thanostools.core.workspace import BucketWorkspace
from thanostools.server.state import QuerierOptions, ServerConfig, ServerState

H = 3_600_000
S = 15_000
PER_BLOCK = H // S  # 240 samples a series per block: two chunks of 120
SERIES = [f"{i:02d}" for i in range(10)]
BAD = "07"
ONE_SERIES = 4 * 120  # planning estimates 120 samples a chunk: batches of exactly one series
T_END = START_MS + 2 * H - 1  # an instant query at T_END over [2h] sees every sample
M = [Matcher.eq("__name__", "m")]


@dataclass(frozen=True)
class Buckets:
    clean: Path  # both blocks intact
    only_first: Path  # the first block alone: what the selection is without the damaged one
    tampered: Path  # the second block's chunk of m{i="07"} flipped
    bad_block: str
    other: Path  # a different bucket with series n{i=...}, for the fan-out


def _block(bucket: Path, hour: int, name: str = "m") -> str:
    t0 = START_MS + hour * H
    t = [t0 + k * S for k in range(PER_BLOCK)]
    extra = {} if name == "m" else {"src": name}  # so that m and n stay apart once functions drop the name
    return write_raw(bucket, [(lab(__name__=name, i=i, **extra), t,
                               [1000.0 * hour + 10 * int(i) + k for k in range(PER_BLOCK)]) for i in SERIES],
                     min_time=t0, max_time=t0 + H)


def _first_chunk(bucket: Path, ulid: str, series: str) -> tuple[Path, int]:
    """The segment file (relative to the bucket) and offset of the series' first chunk record."""
    block = BucketWorkspace.open(str(bucket)).open_block(ulid)
    raw = block.index.series_raw(block.postings([Matcher.eq("__name__", "m"), Matcher.eq("i", series)]))
    ref = int(raw.chunk_ref[0])
    return Path(ulid, "chunks", segment_name(ref_segment(ref))), ref_offset(ref)


@pytest.fixture(scope="module")
def buckets(tmp_path_factory: pytest.TempPathFactory) -> Buckets:
    root = tmp_path_factory.mktemp("streaming")
    clean = root / "clean"
    clean.mkdir()
    first = _block(clean, 0)
    second = _block(clean, 1)
    only_first = root / "only_first"
    only_first.mkdir()
    shutil.copytree(clean / first, only_first / first)
    tampered = root / "tampered"
    shutil.copytree(clean, tampered)
    seg, offset = _first_chunk(clean, second, BAD)  # located in the clean copy: nothing of ``tampered`` is mapped
    target = tampered / seg
    data = bytearray(target.read_bytes())
    data[offset + 4] ^= 0xFF  # past the length varint and encoding byte: inside the payload
    target.write_bytes(bytes(data))
    other = root / "other"
    other.mkdir()
    _block(other, 0, "n")
    return Buckets(clean, only_first, tampered, second, other)


Row = tuple[tuple[tuple[str, str], ...], list[int], list[int]]


def _rows(batches: Iterable[SampleBatch]) -> list[Row]:
    out: list[Row] = []
    for batch in batches:
        for k in range(len(batch)):
            labels, t, v = batch.series(k)
            out.append((labels, t.tolist(), v.tolist()))
    return out


def _select(bucket: Path, matchers: list[Matcher] = M) -> list[Row]:
    return _rows(BlockQuerier(BucketWorkspace.open(str(bucket)).catalog).select(matchers, START_MS, T_END))


def _i(row: Row) -> str:
    return dict(row[0])["i"]


def _expected(b: Buckets) -> list[Row]:
    """Series delivered before the damage was found whole, the rest from the undamaged block alone."""
    return ([r for r in _select(b.clean) if _i(r) < BAD] + [r for r in _select(b.only_first) if _i(r) >= BAD])


def _local(bucket: Path, *, partial: bool, events: list[str] | None = None) -> PartialBlockQuerier:
    state = ServerState(ServerConfig(bucket_url=str(bucket)))
    state.sync()
    q = state.querier(QuerierOptions(partial_response=partial), None if events is None else events.append)
    assert isinstance(q, PartialBlockQuerier)
    return q


def _left_out(b: Buckets) -> str:
    return f"block {b.bad_block} left out: "


# --- serve's local querier -------------------------------------------------------------------------


def test_fixture_damage_is_where_the_tests_expect_it(buckets: Buckets) -> None:
    whole = _select(buckets.clean)
    assert [_i(r) for r in whole] == SERIES and all(len(r[1]) == 2 * PER_BLOCK for r in whole)
    assert _expected(buckets) != whole and _expected(buckets) != _select(buckets.only_first)
    with pytest.raises(CorruptBlockError, match="checksum mismatch") as exc:
        _select(buckets.tampered)
    assert exc.value.block == buckets.bad_block


def test_partial_response_resumes_after_the_last_series_delivered(buckets: Buckets,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    q = _local(buckets.tampered, partial=True, events=events)
    stream = q.select(M, START_MS, T_END, batch_samples=ONE_SERIES)
    assert isinstance(stream, SeriesStream) and stream.series_bound == len(SERIES)
    warnings = stream.warnings
    assert warnings == [] and not events  # nothing decoded yet, so nothing known about the damage
    delivered: list[Row] = []
    with caplog.at_level("ERROR", logger="thanostools.security"):
        for batch in stream.batches:
            if len(delivered) < SERIES.index(BAD):
                assert warnings == []  # the first batches arrive before the damaged chunk is read
            delivered += _rows([batch])
    assert delivered == _expected(buckets)  # label-ordered, each series once
    assert stream.warnings is warnings and len(warnings) == 1  # the late warning is in the same list
    assert warnings[0].startswith(_left_out(buckets)) and "checksum mismatch" in warnings[0]
    assert q.policy.left_out == {buckets.bad_block} and q.policy.warnings == warnings
    assert len(events) == 1 and buckets.bad_block in events[0] and "checksum mismatch" in events[0]
    assert any(r.name == "thanostools.security" and buckets.bad_block in r.getMessage() for r in caplog.records)


def test_partial_response_with_everything_in_one_batch_is_the_selection_without_the_block(
        buckets: Buckets) -> None:
    stream = _local(buckets.tampered, partial=True).select(M, START_MS, T_END)
    assert _rows(stream.batches) == _select(buckets.only_first)
    assert len(stream.warnings) == 1 and stream.warnings[0].startswith(_left_out(buckets))


def test_without_partial_response_the_error_ends_the_stream(buckets: Buckets) -> None:
    events: list[str] = []
    stream = _local(buckets.tampered, partial=False, events=events).select(
        M, START_MS, T_END, batch_samples=ONE_SERIES)
    delivered: list[Row] = []
    with pytest.raises(CorruptBlockError, match="checksum mismatch") as exc:
        for batch in stream.batches:
            delivered += _rows([batch])
    assert exc.value.block == buckets.bad_block and exc.value.file == "chunks/000001"
    # streamed: the series before the damaged one were decoded and delivered before it was read
    assert delivered == _select(buckets.clean)[: SERIES.index(BAD)]
    assert len(events) == 1 and buckets.bad_block in events[0]  # reported without partial response too
    assert stream.warnings == []


def test_select_starts_over_without_the_block(buckets: Buckets) -> None:
    q = _local(buckets.tampered, partial=True)
    res = q.select(M, START_MS, T_END)
    assert _rows([res.collect()]) == _select(buckets.only_first)
    assert len(res.warnings) == 1 and res.warnings[0].startswith(_left_out(buckets))
    with pytest.raises(CorruptBlockError, match="checksum mismatch"):
        _local(buckets.tampered, partial=False).select(M, START_MS, T_END).collect()


def test_an_intact_bucket_streams_what_select_returns(buckets: Buckets) -> None:
    q = _local(buckets.clean, partial=True)
    for size in (1, ONE_SERIES, 3 * ONE_SERIES, 10**9):
        stream = q.select(M, START_MS, T_END, batch_samples=size)
        assert _rows(stream.batches) == _select(buckets.clean) and stream.warnings == []
    assert _rows([q.select(M, START_MS, T_END).collect()]) == _select(buckets.clean)


# --- through the PromQL engine ---------------------------------------------------------------------


def _counts(res: QueryResult) -> dict[str, float]:
    """An instant vector by series: ``m07`` for ``{i="07"}`` of m, ``n07`` for n's."""
    return {dict(s.labels).get("src", "m") + dict(s.labels)["i"]: float(s.v[0]) for s in res.series}


def _expected_counts(name: str = "m") -> dict[str, float]:
    return {name + i: float(2 * PER_BLOCK if i < BAD else PER_BLOCK) for i in SERIES}


def test_the_evaluator_streams_through_the_local_querier(buckets: Buckets) -> None:
    q = _local(buckets.tampered, partial=True)
    res = PromQLEngine(q, QueryOptions(batch_samples=ONE_SERIES)).instant("count_over_time(m[2h])", T_END)
    # Only the streaming path delivers the early series with both blocks' samples (select() drops the block).
    assert _counts(res) == _expected_counts()
    assert res.stats.series_loaded == len(SERIES) and res.stats.peak_samples < 2 * PER_BLOCK * len(SERIES) // 2
    # the warning was found mid-stream, after the selection handed over its warnings: it still arrives, once
    assert len(res.warnings) == 1 and res.warnings[0].startswith(_left_out(buckets))


def test_late_warnings_arrive_once_across_selections(buckets: Buckets) -> None:
    q = _local(buckets.tampered, partial=True)
    res = PromQLEngine(q, QueryOptions(batch_samples=ONE_SERIES)).instant(
        "count_over_time(m[2h]) - on(i) count_over_time(m[2h] offset 1ms)", T_END)
    assert len(res.series) == len(SERIES)
    assert len(res.warnings) == 1 and res.warnings[0].startswith(_left_out(buckets))


def test_the_evaluator_raises_without_partial_response(buckets: Buckets) -> None:
    q = _local(buckets.tampered, partial=False)
    with pytest.raises(CorruptBlockError, match="checksum mismatch"):
        PromQLEngine(q, QueryOptions(batch_samples=ONE_SERIES)).instant("count_over_time(m[2h])", T_END)


# --- fan-out ---------------------------------------------------------------------------------------


MN = [Matcher(MatchType.RE, "__name__", "m|n")]


def test_fanout_streams_and_forwards_late_warnings(buckets: Buckets) -> None:
    local = _local(buckets.tampered, partial=True)
    fan = FanoutQuerier([local, BlockQuerier(BucketWorkspace.open(str(buckets.other)).catalog)])
    stream = fan.select(MN, START_MS, T_END, batch_samples=ONE_SERIES)
    assert stream.warnings == [] and stream.series_bound == 2 * len(SERIES)
    rows = _rows(stream.batches)
    assert rows == _expected(buckets) + _select(buckets.other, MN)
    assert len(stream.warnings) == 1 and stream.warnings[0].startswith(_left_out(buckets))
    res = PromQLEngine(FanoutQuerier([_local(buckets.tampered, partial=True),
                                      BlockQuerier(BucketWorkspace.open(str(buckets.other)).catalog)]),
                       QueryOptions(batch_samples=ONE_SERIES)).instant('count_over_time({__name__=~"m|n"}[2h])',
                                                                        T_END)
    assert _counts(res) == {**_expected_counts("m"), **{"n" + i: float(PER_BLOCK) for i in SERIES}}
    assert len(res.warnings) == 1 and res.warnings[0].startswith(_left_out(buckets))


def test_fanout_streams_what_select_returns(buckets: Buckets) -> None:
    def sources() -> list[BlockQuerier]:  # the first two overlap: their series are chained
        return [BlockQuerier(BucketWorkspace.open(str(p)).catalog)
                for p in (buckets.only_first, buckets.clean, buckets.other)]

    for dedup in (False, True):
        fan = deduplicated(FanoutQuerier(sources()), ("i",), dedup)
        whole = fan.select(MN, START_MS, T_END, batch_samples=10**12)
        batch = whole.collect()
        for size in (1, ONE_SERIES, 7 * ONE_SERIES):
            stream = fan.select(MN, START_MS, T_END, batch_samples=size)
            assert _rows(stream.batches) == _rows([batch]) and stream.warnings == whole.warnings
            assert stream.series_bound >= len(batch)
    with pytest.raises(CorruptBlockError, match="checksum mismatch"):
        stream = FanoutQuerier([_local(buckets.tampered, partial=False), *sources()]).select(
            MN, START_MS, T_END, batch_samples=ONE_SERIES)
        list(stream.batches)


def test_fanout_hands_on_whole_answers_a_batch_at_a_time(buckets: Buckets) -> None:
    mem = MemoryQuerier.from_series((labels, np.array(t, np.int64), np.array(v, np.uint64).view(np.float64))
                                    for labels, t, v in _select(buckets.other, MN))
    choices: list[list[Querier]] = [[mem], [mem, BlockQuerier(BucketWorkspace.open(str(buckets.clean)).catalog)]]
    for sources in choices:
        fan = FanoutQuerier(sources)
        stream = fan.select(MN, START_MS, T_END, batch_samples=PER_BLOCK)
        batches = list(stream.batches)
        assert all(len(b) == 1 for b in batches)  # the materialised answer is handed on a batch at a time
        assert _rows(batches) == _rows([fan.select(MN, START_MS, T_END).collect()])


# --- the real serve --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serves(buckets: Buckets) -> Iterator[ServeFactory]:
    with ServeFactory(buckets.clean.parent) as factory:
        yield factory


def _query_counts(result: list[dict[str, object]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in result:
        metric, value = r["metric"], r["value"]
        assert isinstance(metric, dict) and isinstance(value, list)
        out[metric.get("src", "m") + metric["i"]] = float(value[1])
    return out


def test_serve_http_and_fanout(buckets: Buckets, serves: ServeFactory) -> None:
    # --query.max-samples 1920: selections are read in batches of 480 samples, here one series each
    limits = ("--query.max-samples", str(4 * ONE_SERIES))
    back = serves("--bucket", str(buckets.tampered), *limits)
    front = serves("--bucket", str(buckets.tampered), "--endpoint", back.grpc_address, *limits)
    at = f"{T_END / 1000:.3f}"
    query = {"query": 'count_over_time({__name__=~"m|n"}[2h])', "time": at}
    body = back.get("/api/v1/query", query).json()
    assert body["status"] == "success"
    assert _query_counts(body["data"]["result"]) == _expected_counts("m")
    assert len(body["warnings"]) == 1 and body["warnings"][0].startswith(_left_out(buckets))
    failed = back.get("/api/v1/query", {**query, "partial_response": "false"})
    assert failed.status == 500 and failed.json()["errorType"] == "internal"
    assert buckets.bad_block in failed.json()["error"] and "checksum mismatch" in failed.json()["error"]
    # The front streams its own blocks and merges the back's answer (which left the whole block out):
    # chained, every series has what the front delivered.
    body = front.get("/api/v1/query", query).json()
    assert body["status"] == "success"
    assert _query_counts(body["data"]["result"]) == _expected_counts("m")
    assert any(w.startswith(_left_out(buckets)) for w in body["warnings"])
    assert all(buckets.bad_block in w for w in body["warnings"])
    failed = front.get("/api/v1/query", {**query, "partial_response": "false"})
    assert failed.status == 500 and buckets.bad_block in failed.json()["error"]
    for s in (back, front):
        assert "security=checksum_mismatch" in s.stderr() and "Traceback" not in s.stderr()
