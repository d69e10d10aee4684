"""Our StoreAPI server, called the way a Thanos querier calls it (FORMATS.md §9.7), over real blocks.

Blocks come from promtool (raw, given external labels as a sidecar upload would) and from our
BlockWriter (downsampled AggrChunk blocks, label clashes). Answers are compared with what our block
reader finds in the same blocks: chunk bytes must be identical, decoded samples equal.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import any_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.clihelp import START_MS, make_openmetrics
from tests.fixtures_prom import needs_promtool, promtool_create_blocks
from tests.grpchelp import (
    DownsampledSeries,
    ServerThread,
    StoreClient,
    info_client,
    labels_of,
    make_certs,
    matcher,
    series_of,
    server_factory,
    set_external_labels,
    store_client,
    warnings_of,
    window_aggregates,
    write_downsampled,
)
from thanostools._proto.info.infopb import rpc_pb2 as info_pb2
from thanostools._proto.store.hintspb import hints_pb2
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core import labels as labelset
from thanostools.core.chunkenc import xor
from thanostools.core.inspect import BlockInfo
from thanostools.core.matchers import Matcher
from thanostools.core.pipeline.read import each_series
from thanostools.core.storage import select_blocks
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace
from thanostools.server.grpc import GrpcTLS

pytestmark = [needs_promtool, pytest.mark.promtool]

EU = {"cluster": "eu", "replica": "a"}
RE = types_pb2.LabelMatcher.RE
NEQ = types_pb2.LabelMatcher.NEQ
ALL = matcher("__name__", ".+", RE)
FAR = 2**62
DS_START = START_MS
DS_END = START_MS + 2 * 3600_000
HIST_PAYLOADS = [b"\x00\x01integer-histogram", b"\x00\x01float-histogram"]


def _ds_series() -> list[DownsampledSeries]:
    t = DS_START + np.arange(0, 2 * 3600_000, 60_000, dtype=np.int64)
    return [DownsampledSeries((("__name__", "ds_metric"), ("k", str(i))), t, np.cumsum(np.full(t.size, i + 1.0)))
            for i in range(3)]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bucket")
    promtool_create_blocks(make_openmetrics(series=30, hours=3), root)
    for d in root.iterdir():
        if d.is_dir():
            set_external_labels(d, EU)
    # Downsampled data with a raw twin (same external labels) for resolution selection.
    write_downsampled(root, _ds_series(), ext={"cluster": "ds"}, min_time=DS_START, max_time=DS_END)
    raw = BlockWriter(str(root), external_labels={"cluster": "ds"}, min_time=DS_START, max_time=DS_END)
    for s in _ds_series():
        raw.add_samples(s.labels, s.t, s.v)
    raw.finish()
    write_downsampled(root, _ds_series()[:1], ext={"cluster": "nocounter"}, min_time=DS_START, max_time=DS_END,
                      drop=("counter",))
    # External labels that clash with series labels, and an order that changes once they are added.
    w = BlockWriter(str(root), external_labels={"cluster": "clash", "job": "ext", "b": "x"},
                    min_time=DS_START, max_time=DS_END)
    t = DS_START + np.arange(0, 600_000, 15_000, dtype=np.int64)
    for lab in sorted([(("a", "1"),), (("a", "1"), ("aa", "1")), (("__name__", "x"), ("job", "p")),
                       (("__name__", "x"), ("job", "q"))]):
        w.add_samples(lab, t, np.arange(t.size, dtype=np.float64))
    w.finish()
    # Native histogram chunks are passed through (not decoded); encodings 5 and 6 (histogram ST) cannot be sent at
    # all (XOR2, encoding 4, is sent re-encoded as XOR: tests/server/test_storeapi_xor2.py).
    for cluster, encodings in (("hist", [2, 3]), ("st", [5])):
        hw = BlockWriter(str(root), external_labels={"cluster": cluster}, min_time=DS_START, max_time=DS_END)
        payloads = [HIST_PAYLOADS[i] for i in range(len(encodings))]
        offsets = np.cumsum([0] + [len(p) for p in payloads])
        starts = DS_START + 1000 * np.arange(len(encodings), dtype=np.int64)
        hw.add_chunks((("__name__", "h"),), np.array(encodings), np.frombuffer(b"".join(payloads), np.uint8),
                      offsets, starts, starts + 500, len(encodings))
        hw.finish()
    return root


@pytest.fixture
def grpc_servers() -> Iterator[type[ServerThread]]:
    yield from server_factory()


@pytest.fixture(scope="module")
def workspace(bucket: Path) -> BucketWorkspace:
    return BucketWorkspace.open(str(bucket))


@pytest.fixture(scope="module")
def server(workspace: BucketWorkspace) -> Iterator[ServerThread]:
    s = ServerThread(workspace)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with server.channel() as ch:
        yield ch


@pytest.fixture(scope="module")
def store(server: ServerThread, channel: grpc.Channel) -> StoreClient:
    return server.store(channel)


def _call(store: StoreClient, **kw: Any) -> list[rpc_pb2.SeriesResponse]:
    """``kw`` are SeriesRequest fields, some deliberately of a wrong value or type."""
    return list(store.Series(rpc_pb2.SeriesRequest(**kw), timeout=30))


def _eu_blocks(workspace: BucketWorkspace) -> list[Block]:
    return [Block.open_dir(str(workspace.bucket.local_path(b.ulid))) for b in workspace.blocks()
            if b.meta.external_labels == labelset.from_dict(EU)]


def _samples(s: types_pb2.Series, field: str = "raw") -> tuple[np.ndarray, np.ndarray]:
    parts = [xor.decode(getattr(c, field).data) for c in s.chunks]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --- discovery ---------------------------------------------------------------------------------------


def test_info_describes_the_blocks(workspace: BucketWorkspace, channel: grpc.Channel) -> None:
    resp = info_client(channel).Info(info_pb2.InfoRequest(), timeout=5)
    assert resp.ComponentType == "store" and resp.HasField("store")
    infos = workspace.blocks()
    assert resp.store.min_time == min(b.meta.min_time for b in infos)
    assert resp.store.max_time == max(b.meta.max_time for b in infos)
    assert resp.store.supports_sharding and resp.store.supports_without_replica_labels
    sets = [tuple((lab.name, lab.value) for lab in ls.labels) for ls in resp.label_sets]
    assert sorted(sets, key=lambda ls: labelset.format_labels(ls, with_name=False)) == sets
    assert set(sets) == {b.meta.external_labels for b in infos}
    eu = [t for t in resp.store.tsdb_infos if labels_of(t.labels) == labelset.from_dict(EU)]
    eu_blocks = [b for b in infos if b.meta.external_labels == labelset.from_dict(EU)]
    assert [(t.min_time, t.max_time) for t in eu] == sorted((b.meta.min_time, b.meta.max_time) for b in eu_blocks)
    ds = [(t.min_time, t.max_time) for t in resp.store.tsdb_infos if labels_of(t.labels) == (("cluster", "ds"),)]
    assert ds == [(DS_START, DS_END)]  # the raw and the 5m block cover the same range: one entry

    legacy = store_client(channel).Info(rpc_pb2.InfoRequest(), timeout=5)
    assert legacy.storeType == rpc_pb2.STORE and len(legacy.label_sets) == len(sets)
    assert legacy.min_time == resp.store.min_time


def test_not_ready_until_synced(workspace: BucketWorkspace, grpc_servers: type[ServerThread]) -> None:
    s = grpc_servers(workspace, ready=lambda: False)
    with s.channel() as ch, pytest.raises(grpc.RpcError) as err:
        info_client(ch).Info(info_pb2.InfoRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and err.value.details() == "Not ready"


# --- series --------------------------------------------------------------------------------------------


def test_series_raw_chunks_byte_for_byte(workspace: BucketWorkspace, store: StoreClient) -> None:
    frames = _call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "eu"), ALL],
                   aggregates=[rpc_pb2.COUNT, rpc_pb2.SUM], partial_response_strategy=types_pb2.ABORT)
    got = series_of(frames)
    assert [labels_of(s) for s in got] == sorted(labels_of(s) for s in got)
    assert frames[-1].WhichOneof("result") == "hints" and not warnings_of(frames)
    expected: dict[tuple[tuple[str, str], ...], list[bytes]] = {}
    for block in sorted(_eu_blocks(workspace), key=lambda b: b.meta.min_time):
        for sc in each_series(block):
            key = labelset.merge(sc.labels.labels(0), labelset.from_dict(EU))
            expected.setdefault(key, []).extend(sc.chunks.payload(j) for j in range(len(sc.chunks)))
    assert {labels_of(s): [c.raw.data for c in s.chunks] for s in got} == expected
    assert all(c.raw.type == types_pb2.Chunk.XOR and not c.HasField("count") for s in got for c in s.chunks)


def test_series_time_range_and_matchers(workspace: BucketWorkspace, store: StoreClient) -> None:
    mint, maxt = START_MS + 3600_000, START_MS + 5400_000
    frames = _call(store, min_time=mint, max_time=maxt, matchers=[matcher("job", "node"), matcher("replica", "a")])
    got = {labels_of(s): s for s in series_of(frames)}
    want = {}
    for b in select_blocks(_eu_blocks(workspace), [Matcher.eq("job", "node")], mint, maxt):
        for i in range(len(b)):
            lab, t, v = b.series(i)
            want[labelset.merge(lab, labelset.from_dict(EU))] = (t, v)
    assert set(got) == set(want) and want
    for lab, s in got.items():
        assert all(c.max_time >= mint and c.min_time <= maxt for c in s.chunks)
        t, v = _samples(s)
        keep = (t >= mint) & (t <= maxt)
        np.testing.assert_array_equal(t[keep], want[lab][0])
        np.testing.assert_array_equal(v[keep], want[lab][1])


def test_external_labels_win_and_order_after_adding_them(store: StoreClient) -> None:
    got = series_of(_call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "clash")]))
    labels = [labels_of(s) for s in got]
    assert labels == sorted(labels)
    # {a=1, aa=1} sorts after {a=1} in the index, before it once b="x" is added.
    assert labels[0] == (("__name__", "x"), ("b", "x"), ("cluster", "clash"), ("job", "ext"))
    assert labels[1:] == [(("a", "1"), ("aa", "1"), ("b", "x"), ("cluster", "clash"), ("job", "ext")),
                          (("a", "1"), ("b", "x"), ("cluster", "clash"), ("job", "ext"))]
    assert len(got[0].chunks) == 2  # job=p and job=q became one series: both chunks, one frame


def test_external_label_matcher_rules_out_blocks(store: StoreClient) -> None:
    assert series_of(_call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "nowhere")])) == []
    got = series_of(_call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("job", "ext")]))
    assert {labelset.get(labels_of(s), "cluster") for s in got} == {"clash"}


@pytest.mark.parametrize("mrw", [300_000, 3_600_000])
def test_downsampled_blocks_for_max_resolution_window(store: StoreClient, mrw: int) -> None:
    frames = _call(store, min_time=DS_START, max_time=DS_END, matchers=[matcher("cluster", "ds")],
                   max_resolution_window=mrw, aggregates=[rpc_pb2.COUNT, rpc_pb2.SUM])
    got = series_of(frames)
    assert len(got) == 3
    for s, src in zip(got, _ds_series(), strict=True):
        assert all(not c.HasField("raw") and c.HasField("count") and c.HasField("sum") and not c.HasField("max")
                   for c in s.chunks)
        want = window_aggregates(src.t, src.v, 300_000)
        for name in ("count", "sum"):
            t, v = _samples(s, name)
            np.testing.assert_array_equal(t, want[name][0])
            np.testing.assert_array_equal(v.view(np.float64), want[name][1])


def test_raw_blocks_for_zero_resolution_window(store: StoreClient) -> None:
    got = series_of(_call(store, min_time=DS_START, max_time=DS_END, matchers=[matcher("cluster", "ds")],
                          aggregates=[rpc_pb2.COUNT, rpc_pb2.SUM]))
    assert len(got) == 3 and all(c.HasField("raw") and not c.HasField("count") for s in got for c in s.chunks)
    t, _ = _samples(got[0])
    np.testing.assert_array_equal(t, _ds_series()[0].t)


def test_missing_aggregate_warns_or_aborts(store: StoreClient) -> None:
    req = dict(min_time=DS_START, max_time=DS_END, matchers=[matcher("cluster", "nocounter")],
               max_resolution_window=300_000, aggregates=[rpc_pb2.COUNTER])
    frames = _call(store, **req)
    assert series_of(frames) == []
    assert any("counter does not exist" in w for w in warnings_of(frames))
    with pytest.raises(grpc.RpcError) as err:
        _call(store, partial_response_strategy=types_pb2.ABORT, **req)
    assert err.value.code() == grpc.StatusCode.ABORTED and "counter" in (err.value.details() or "")


def test_histogram_chunks_pass_through_with_storepb_types(store: StoreClient) -> None:
    frames = _call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("__name__", "h")])
    got = series_of(frames)
    assert [labelset.get(labels_of(s), "cluster") for s in got] == ["hist"]
    assert [(c.raw.type, c.raw.data) for c in got[0].chunks] == [
        (types_pb2.Chunk.HISTOGRAM, HIST_PAYLOADS[0]), (types_pb2.Chunk.FLOAT_HISTOGRAM, HIST_PAYLOADS[1])]
    assert len(warnings_of(frames)) == 1 and "encoding 5" in warnings_of(frames)[0]


def test_skip_chunks_limit_and_batches(store: StoreClient) -> None:
    base = dict(min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "eu")])
    full = [labels_of(s) for s in series_of(_call(store, **base))]
    bare = series_of(_call(store, skip_chunks=True, **base))
    assert [labels_of(s) for s in bare] == full and all(len(s.chunks) == 0 for s in bare)
    assert [labels_of(s) for s in series_of(_call(store, limit=3, **base))] == full[:3]
    frames = _call(store, response_batch_size=4, **base)
    assert {f.WhichOneof("result") for f in frames} == {"batch", "hints"}
    assert [labels_of(s) for s in series_of(frames)] == full


def test_without_replica_labels(store: StoreClient) -> None:
    frames = _call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "eu")],
                   without_replica_labels=["replica"])
    got = [labels_of(s) for s in series_of(frames)]
    assert got and got == sorted(got) and all(labelset.get(lab, "replica") == "" for lab in got)


def test_shards_partition_the_series(store: StoreClient) -> None:
    base = dict(min_time=-FAR, max_time=FAR, matchers=[ALL], skip_chunks=True)
    full = [labels_of(s) for s in series_of(_call(store, **base))]

    def shards(by: bool, names: list[str]) -> list[list[tuple[tuple[str, str], ...]]]:
        return [[labels_of(s) for s in series_of(_call(store, shard_info=rpc_pb2.ShardInfo(
            shard_index=i, total_shards=3, by=by, labels=names), **base))] for i in range(3)]

    without = shards(False, ["replica"])
    assert sorted(lab for part in without for lab in part) == full and all(without)
    by_instance = shards(True, ["instance"])
    assert sorted(lab for part in by_instance for lab in part) == full
    seen = [{labelset.get(lab, "instance") for lab in part} for part in by_instance]
    assert all(not (seen[i] & seen[j]) for i in range(3) for j in range(i + 1, 3))


def test_block_matcher_hints_and_response_hints(workspace: BucketWorkspace, store: StoreClient) -> None:
    ulid = next(b.ulid for b in workspace.blocks() if b.meta.external_labels == labelset.from_dict(EU))
    hints = any_pb2.Any()
    hints.Pack(hints_pb2.SeriesRequestHints(block_matchers=[matcher("__block_id", ulid)]))
    frames = _call(store, min_time=-FAR, max_time=FAR, matchers=[ALL], hints=hints)
    resp = hints_pb2.SeriesResponseHints()
    assert frames[-1].hints.Unpack(resp)
    assert [b.id for b in resp.queried_blocks] == [ulid]
    block = Block.open_dir(str(workspace.bucket.local_path(ulid)))
    assert len(series_of(frames)) == block.meta.stats.num_series


def test_label_names_and_values(store: StoreClient) -> None:
    names = store.LabelNames(rpc_pb2.LabelNamesRequest(start=-FAR, end=FAR), timeout=10)
    assert {"__name__", "cluster", "replica", "job", "instance", "k", "a", "aa", "b"} <= set(names.names)
    assert list(names.names) == sorted(names.names)
    some = store.LabelNames(rpc_pb2.LabelNamesRequest(
        start=-FAR, end=FAR, matchers=[matcher("cluster", "ds")], without_replica_labels=["k"]), timeout=10)
    assert list(some.names) == ["__name__", "cluster"]
    clusters = store.LabelValues(rpc_pb2.LabelValuesRequest(
        label="cluster", start=-FAR, end=FAR), timeout=10)
    assert list(clusters.values) == ["clash", "ds", "eu", "hist", "nocounter", "st"]
    jobs = store.LabelValues(rpc_pb2.LabelValuesRequest(
        label="job", start=-FAR, end=FAR, matchers=[matcher("cluster", "clash", NEQ)], limit=2), timeout=10)
    assert len(jobs.values) == 2 and "ext" not in jobs.values
    ext_only = store.LabelValues(rpc_pb2.LabelValuesRequest(
        label="replica", start=-FAR, end=FAR, matchers=[matcher("job", "node")]), timeout=10)
    assert list(ext_only.values) == ["a"]
    nothing = store.LabelValues(rpc_pb2.LabelValuesRequest(label="cluster", start=0, end=1), timeout=10)
    assert list(nothing.values) == []


@pytest.mark.parametrize("req", [
    dict(min_time=10, max_time=1),
    dict(min_time=0, max_time=1, matchers=[matcher("a", "(", RE)]),
    dict(min_time=0, max_time=1, matchers=[matcher("", "x")]),
    dict(min_time=0, max_time=1, aggregates=[9]),
    dict(min_time=0, max_time=1, limit=-1),
    dict(min_time=0, max_time=1, partial_response_strategy=7),
    dict(min_time=0, max_time=1, shard_info=rpc_pb2.ShardInfo(shard_index=3, total_shards=3)),
    dict(min_time=0, max_time=1, max_resolution_window=-5),
])
def test_bad_series_requests_are_invalid_argument(store: StoreClient, req: dict[str, object]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(store, **req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "\n" not in (err.value.details() or "\n")


def test_bad_label_requests_are_invalid_argument(store: StoreClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        store.LabelValues(rpc_pb2.LabelValuesRequest(label="", start=0, end=1), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        store.LabelNames(rpc_pb2.LabelNamesRequest(start=5, end=1), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert series_of(_call(store, min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "ds")]))  # still serving


def test_unexpected_failure_is_internal_and_server_survives(workspace: BucketWorkspace,
                                                           grpc_servers: type[ServerThread]) -> None:
    calls: list[int] = []

    def flaky() -> list[BlockInfo]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("listing exploded\nsecond line")
        return workspace.blocks()

    s = grpc_servers(workspace, blocks=flaky)
    with s.channel() as ch:
        with pytest.raises(grpc.RpcError) as err:
            info_client(ch).Info(info_pb2.InfoRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL and err.value.details() == (
            "Info: RuntimeError: listing exploded second line")
        assert info_client(ch).Info(info_pb2.InfoRequest(), timeout=5).ComponentType == "store"


# --- integrity -----------------------------------------------------------------------------------------


def _tamper(block_dir: Path) -> None:
    seg = block_dir / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[8 + 10] ^= 0xFF  # inside the first chunk's payload
    seg.write_bytes(bytes(data))


def test_tampered_chunk_is_detected(bucket: Path, tmp_path: Path, grpc_servers: type[ServerThread],
                                    caplog: pytest.LogCaptureFixture) -> None:
    copy = tmp_path / "bucket"
    shutil.copytree(bucket, copy)
    eng = BucketWorkspace.open(str(copy))
    eu = sorted((b for b in eng.blocks() if b.meta.external_labels == labelset.from_dict(EU)),
                key=lambda b: b.meta.min_time)
    _tamper(copy / eu[0].ulid)
    s = grpc_servers(eng)
    req = dict(min_time=-FAR, max_time=FAR, matchers=[matcher("cluster", "eu")])
    with s.channel() as ch:
        stub = s.store(ch)
        with caplog.at_level("ERROR", logger="thanostools.security"):
            frames = _call(stub, **req)
        warnings = warnings_of(frames)
        assert len(warnings) == 1 and eu[0].ulid in warnings[0] and "checksum mismatch" in warnings[0]
        got = series_of(frames)
        assert got and all(c.min_time >= eu[1].meta.min_time for x in got for c in x.chunks)
        assert any(eu[0].ulid in e and "chunks/000001" in e for e in s.security_events)
        assert any(r.name == "thanostools.security" and eu[0].ulid in r.getMessage() for r in caplog.records)
        with pytest.raises(grpc.RpcError) as err:
            _call(stub, partial_response_strategy=types_pb2.ABORT, **req)
        assert err.value.code() == grpc.StatusCode.ABORTED and eu[0].ulid in (err.value.details() or "")


# --- service plumbing ------------------------------------------------------------------------------------


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "thanos.Store", "thanos.info.Info"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="thanos.Store"),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="thanos.info.Info")]
    answers = list(stub.ServerReflectionInfo(iter(reqs), timeout=5))
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"thanos.Store", "thanos.info.Info", "grpc.health.v1.Health"} <= services
    from google.protobuf import descriptor_pb2

    names = []
    for a in answers[1:]:
        fd = descriptor_pb2.FileDescriptorProto()
        fd.ParseFromString(a.file_descriptor_response.file_descriptor_proto[0])
        names.append(fd.name)
    assert names == ["store/storepb/rpc.proto", "info/infopb/rpc.proto"]


def _info_over(address: str, creds: grpc.ChannelCredentials) -> info_pb2.InfoResponse:
    with grpc.secure_channel(address, creds) as ch:
        return info_client(ch).Info(info_pb2.InfoRequest(), timeout=5)


def test_tls_and_mtls(workspace: BucketWorkspace, tmp_path: Path, grpc_servers: type[ServerThread]) -> None:
    pytest.importorskip("cryptography")
    c = make_certs(tmp_path / "certs")
    tls = grpc_servers(workspace, tls=GrpcTLS(str(c.server_cert), str(c.server_key)))
    assert _info_over(tls.address, grpc.ssl_channel_credentials(c.ca.read_bytes())).ComponentType == "store"
    with pytest.raises(grpc.RpcError) as err:
        _info_over(tls.address, grpc.ssl_channel_credentials(c.other_ca.read_bytes()))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with tls.channel() as plain, pytest.raises(grpc.RpcError):
        info_client(plain).Info(info_pb2.InfoRequest(), timeout=5)

    mtls = grpc_servers(workspace, tls=GrpcTLS(str(c.server_cert), str(c.server_key), str(c.ca)))
    good = grpc.ssl_channel_credentials(c.ca.read_bytes(), c.client_key.read_bytes(), c.client_cert.read_bytes())
    assert _info_over(mtls.address, good).ComponentType == "store"
    for creds in (grpc.ssl_channel_credentials(c.ca.read_bytes()),
                  grpc.ssl_channel_credentials(c.ca.read_bytes(), c.other_client_key.read_bytes(),
                                               c.other_client_cert.read_bytes())):
        with pytest.raises(grpc.RpcError) as err:
            _info_over(mtls.address, creds)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bad_tls_files_and_busy_port_are_config_errors(workspace: BucketWorkspace, tmp_path: Path,
                                                       grpc_servers: type[ServerThread]) -> None:
    from thanostools.core.errors import ConfigError

    with pytest.raises(ConfigError, match="gRPC TLS key"):
        grpc_servers(workspace, tls=GrpcTLS(str(tmp_path / "no.crt"), str(tmp_path / "no.key")))
    first = grpc_servers(workspace)
    import asyncio

    from thanostools.server.grpc import build_grpc_server

    async def again() -> None:
        await build_grpc_server(blocks=workspace.blocks, catalog=workspace.catalog, address=first.address)

    with pytest.raises(ConfigError, match="cannot listen"):
        asyncio.run_coroutine_threadsafe(again(), first.loop).result(timeout=30)
