"""RemoteStoreQuerier and FanoutQuerier against our own StoreAPI servers on 127.0.0.1.

The reference is the local BlockQuerier over the same blocks: whatever travels over gRPC must come
back as the same samples, deduplicated the same way.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS
from tests.fixtures_prom import free_port
from tests.grpchelp import DownsampledSeries, ServerThread, make_certs, server_factory, write_downsampled
from thanostools.core.dedup import DedupQuerier
from thanostools.core.errors import SourceError
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.querier import BlockQuerier
from thanostools.core.series import Querier, SampleBatch, SelectHints
from thanostools.core.sources.fanout import FanoutQuerier
from thanostools.core.sources.remote import RemoteStoreQuerier, RemoteTLS
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace
from thanostools.server.grpc import GrpcTLS

H = 3_600_000
END = START_MS + 2 * H
ALL = [Matcher(MatchType.RE, "__name__", ".+")]


def _write_replica(parent: Path, replica: str) -> None:
    w = BlockWriter(str(parent), external_labels={"cluster": "eu", "replica": replica}, min_time=START_MS,
                    max_time=END)
    t = START_MS + np.arange(0, 2 * H, 15_000, dtype=np.int64)
    if replica == "b":
        t = t + 3_000
        t = t[(t < START_MS + H) | (t > START_MS + H + 600_000)]  # a 10-minute gap in replica b
    for i in range(4):
        v = np.cumsum(np.full(t.size, float(i + 1)))
        if replica == "b":
            v = v + 0.5
        w.add_samples((("__name__", "req_total"), ("inst", str(i))), t, v)
    w.finish()


def _ds_series() -> list[DownsampledSeries]:
    t = START_MS + np.arange(0, 2 * H, 60_000, dtype=np.int64)
    v = np.cumsum(np.arange(t.size, dtype=np.float64) % 7)
    v[60:] -= v[59]  # a counter reset inside the chunk
    return [DownsampledSeries((("__name__", "ds_total"), ("k", "0")), t, v)]


@pytest.fixture(scope="module")
def buckets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remote")
    out = {name: root / name for name in ("a", "b", "both", "ds")}
    for p in out.values():
        p.mkdir()
    _write_replica(out["a"], "a")
    _write_replica(out["b"], "b")
    for name in ("a", "b"):
        for block in out[name].iterdir():
            shutil.copytree(block, out["both"] / block.name)
    write_downsampled(out["ds"], _ds_series(), ext={"cluster": "ds"}, min_time=START_MS, max_time=END)
    return out


@pytest.fixture
def grpc_servers() -> Iterator[type[ServerThread]]:
    yield from server_factory()


@pytest.fixture(scope="module")
def servers(buckets: dict[str, Path]) -> Iterator[dict[str, ServerThread]]:
    started = {name: ServerThread(BucketWorkspace.open(str(buckets[name]))) for name in ("a", "b", "ds")}
    yield started
    for s in started.values():
        s.stop()


def _as_dict(batch: SampleBatch) -> dict[Labels, tuple[list[int], list[int]]]:
    out = {}
    for i in range(len(batch)):
        lab, t, v = batch.series(i)
        out[lab] = (t.tolist(), v.tolist())
    return out


def test_remote_returns_what_the_blocks_hold(buckets: dict[str, Path], servers: dict[str, ServerThread]) -> None:
    local = BlockQuerier(BucketWorkspace.open(str(buckets["both"])).catalog)
    with RemoteStoreQuerier([servers["a"].address, servers["b"].address], timeout_s=10,
                            partial_response=False) as remote:
        for mint, maxt in [(START_MS, END), (START_MS + H - 1, START_MS + H + 900_000)]:
            got = remote.select(ALL, mint, maxt)
            batch = got.collect()
            assert got.warnings == []
            assert _as_dict(batch) == _as_dict(local.select(ALL, mint, maxt).collect())
            assert batch.labels == sorted(batch.labels) and len(batch) == 8
        assert remote.label_names([], START_MS, END) == local.label_names([], START_MS, END)
        assert remote.label_values("replica", [], START_MS, END).values == ["a", "b"]
        infos, warnings = remote.endpoint_infos()
        assert not warnings and {i.label_sets for i in infos} == {((("cluster", "eu"), ("replica", r)),)
                                                                   for r in "ab"}


def test_fanout_dedups_replicas(buckets: dict[str, Path], servers: dict[str, ServerThread]) -> None:
    local = DedupQuerier(BlockQuerier(BucketWorkspace.open(str(buckets["both"])).catalog), ("replica",))
    remote = RemoteStoreQuerier([servers["a"].address, servers["b"].address], timeout_s=10, partial_response=True)
    local_a = BlockQuerier(BucketWorkspace.open(str(buckets["a"])).catalog)
    remote_b = RemoteStoreQuerier([servers["b"].address], timeout_s=10, partial_response=True)
    try:
        choices: list[list[Querier]] = [[remote], [local_a, remote_b]]
        for sources in choices:
            fan = DedupQuerier(FanoutQuerier(sources), ["replica"])
            for hints in (None, SelectHints(START_MS, END, func="rate", range=300_000)):
                got = fan.select(ALL, START_MS, END, hints).collect()
                want = local.select(ALL, START_MS, END, hints).collect()
                assert len(got) == 4 and all(("replica", "a") not in lab for lab in got.labels)
                assert _as_dict(got) == _as_dict(want)
            assert fan.label_values("replica", [], START_MS, END).values == []
            assert "replica" not in fan.label_names([], START_MS, END).values
    finally:
        remote.close()
        remote_b.close()


@pytest.mark.parametrize("func", ["", "max_over_time", "min_over_time", "count_over_time", "sum_over_time", "rate"])
def test_downsampled_aggregates_through_remote(buckets: dict[str, Path], servers: dict[str, ServerThread],
                                               func: str) -> None:
    local = BlockQuerier(BucketWorkspace.open(str(buckets["ds"])).catalog, max_source_resolution_ms=300_000)
    hints = SelectHints(START_MS - H, END, func=func, range=H if func == "rate" else 0)
    with RemoteStoreQuerier([servers["ds"].address], timeout_s=10, partial_response=False,
                            max_source_resolution_ms=300_000) as remote:
        got = remote.select(ALL, START_MS - H, END, hints)
    want = local.select(ALL, START_MS - H, END, hints).collect()
    assert got.warnings == [] and len(batch := got.collect()) == 1
    assert _as_dict(batch) == _as_dict(want)


def test_unreachable_endpoint_is_a_warning_or_an_error(servers: dict[str, ServerThread]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with RemoteStoreQuerier([servers["a"].address, dead], timeout_s=3, partial_response=True) as remote:
        got = remote.select(ALL, START_MS, END)
        assert len(got.collect()) == 4 and len(got.warnings) == 1 and dead in got.warnings[0]
        assert remote.label_values("replica", [], START_MS, END).values == ["a"]
    with RemoteStoreQuerier([servers["a"].address, dead], timeout_s=3, partial_response=False) as remote, \
            pytest.raises(SourceError, match=dead):
        remote.select(ALL, START_MS, END)


def test_endpoints_ruled_out_by_external_labels_or_time(servers: dict[str, ServerThread]) -> None:
    with RemoteStoreQuerier([servers["a"].address, servers["ds"].address], timeout_s=10,
                            partial_response=False, max_source_resolution_ms=H) as remote:
        assert len(remote.select([*ALL, Matcher.eq("cluster", "ds")], START_MS, END).collect()) == 1
        assert len(remote.select([*ALL, Matcher.eq("cluster", "eu")], START_MS, END).collect()) == 4
        infos, _ = remote.endpoint_infos()
        ds = next(i for i in infos if i.address == servers["ds"].address)
        assert ds.may_match([Matcher.eq("cluster", "ds")], START_MS, END)
        assert not ds.may_match([Matcher.eq("cluster", "eu")], START_MS, END)
        assert not ds.may_match([], END + 1, END + H) and ds.may_match([Matcher.eq("other", "x")], START_MS, START_MS)
        assert len(remote.select(ALL, END + H, END + 2 * H).collect()) == 0
        request = remote.series_request(ALL, 0, 10, SelectHints(0, 10, func="max_over_time"))
        assert list(request.aggregates) == [4] and request.query_hints.func.name == "max_over_time"


def test_mtls_client(buckets: dict[str, Path], tmp_path: Path, grpc_servers: type[ServerThread]) -> None:
    pytest.importorskip("cryptography")
    c = make_certs(tmp_path / "certs")
    s = grpc_servers(BucketWorkspace.open(str(buckets["a"])),
                     tls=GrpcTLS(str(c.server_cert), str(c.server_key), str(c.ca)))
    good = RemoteTLS(ca_file=str(c.ca), cert_file=str(c.client_cert), key_file=str(c.client_key))
    with RemoteStoreQuerier([s.address], timeout_s=5, partial_response=False, tls=good) as remote:
        assert len(remote.select(ALL, START_MS, END).collect()) == 4
    with RemoteStoreQuerier([s.address], timeout_s=5, partial_response=False,
                            tls=RemoteTLS(ca_file=str(c.ca))) as remote, pytest.raises(SourceError):
        remote.select(ALL, START_MS, END)
