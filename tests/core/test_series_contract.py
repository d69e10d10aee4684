"""Every ``Querier`` keeps one contract: ``select`` returns a ``SeriesStream`` (label-ordered batches and a
warnings list), the label APIs a ``LabelResult``.

The signatures are checked by mypy: every implementation subclasses the ``Querier`` protocol, so an
implementation that drifts from it fails ``mypy``; the first test makes sure none is left out of that."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import thanostools
from tests.grpchelp import ServerThread, server_factory
from tests.tui.tuihelp import make_bucket
from thanostools.core.catalog import CompactionLeftovers
from thanostools.core.dedup import DedupQuerier
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.partial import PartialResponse
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.querier import BlockQuerier, bucket_querier
from thanostools.core.series import LabelResult, Querier, SampleBatch, SelectHints, SeriesStream
from thanostools.core.sources.fanout import FanoutQuerier
from thanostools.core.sources.remote import RemoteStoreQuerier
from thanostools.core.workspace import BucketWorkspace
from thanostools.server.state import QuerierOptions, ServerConfig, ServerState
from thanostools.tui.sources import BucketSource, QuerySettings, StoreSource

ALL = [Matcher(MatchType.RE, "__name__", ".+")]
FAR = 2**62


def test_every_querier_in_the_package_subclasses_the_protocol() -> None:
    """A class with ``select``, ``label_names`` and ``label_values`` is a querier and must say so."""
    found = []
    for mod in pkgutil.walk_packages(thanostools.__path__, "thanostools."):
        if mod.name.endswith("__main__") or mod.name.startswith("thanostools._proto"):
            continue
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == mod.name and cls is not Querier and all(
                    callable(cls.__dict__.get(m)) for m in ("select", "label_names", "label_values")):
                found.append(cls)
                assert Querier in cls.__mro__, f"{cls.__module__}.{cls.__qualname__} does not subclass Querier"
    assert len(found) >= 7, found  # the discovery itself works (there are seven today)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bucket(tmp_path_factory.mktemp("contract") / "b")


@pytest.fixture(scope="module")
def grpc_servers() -> Iterator[type[ServerThread]]:
    yield from server_factory()


def _queriers(bucket: Path, store: ServerThread) -> dict[str, Querier]:
    workspace = BucketWorkspace.open(str(bucket))
    catalog = workspace.catalog.view(CompactionLeftovers())
    state = ServerState(ServerConfig(bucket_url=str(bucket)))
    state.sync()
    remote = RemoteStoreQuerier([store.address], timeout_s=10)
    batch = BlockQuerier(catalog).select(ALL, 0, FAR).collect()
    settings = QuerySettings(dedup=True, replica_labels=("cluster",))
    return {
        "block": BlockQuerier(catalog),
        "partial": bucket_querier(catalog, PartialResponse()),
        "dedup": DedupQuerier(BlockQuerier(catalog), ("cluster",)),
        "fanout": FanoutQuerier([BlockQuerier(catalog), remote]),
        "remote": remote,
        "memory": MemoryQuerier(list(batch.labels), [batch.series(i)[1] for i in range(len(batch))],
                                [batch.series(i)[2] for i in range(len(batch))]),
        "serve": state.querier(QuerierOptions()),
        "tui-bucket": BucketSource(workspace).querier(settings, 0),
        "tui-store": StoreSource(store.address, lambda s, r: remote).querier(settings, 0),
    }


def test_every_querier_returns_a_stream_with_warnings(bucket: Path, grpc_servers: type[ServerThread]) -> None:
    store = grpc_servers(BucketWorkspace.open(str(bucket)))
    for name, q in _queriers(bucket, store).items():
        stream = q.select(ALL, 0, FAR, SelectHints(0, FAR), batch_samples=1)
        assert isinstance(stream, SeriesStream) and isinstance(stream.warnings, list), name
        batches = list(stream)
        assert batches and all(isinstance(b, SampleBatch) for b in batches), name
        assert all(len(b) == 1 for b in batches), name  # one sample per batch asked for: whole series each
        labels = [lab for b in batches for lab in b.labels]
        assert labels == sorted(labels) and stream.series_bound >= len(labels), name
        names = q.label_names([], 0, FAR)
        values = q.label_values("__name__", [], 0, FAR)
        assert isinstance(names, LabelResult) and isinstance(values, LabelResult), name
        assert "__name__" in names.values and values.values == sorted(values.values) and values.values, name
        assert isinstance(names.warnings, list) and isinstance(values.warnings, list), name


def test_a_dead_endpoint_is_a_warning_of_the_stream(bucket: Path) -> None:
    with RemoteStoreQuerier(["127.0.0.1:1"], timeout_s=2) as remote:
        stream = FanoutQuerier([BlockQuerier(BucketWorkspace.open(str(bucket)).catalog), remote]).select(ALL, 0, FAR)
        assert len(stream.collect()) > 0
        assert len(stream.warnings) == 1 and "127.0.0.1:1" in stream.warnings[0]
        names = remote.label_names([], 0, FAR)
        assert names.values == [] and len(names.warnings) == 1 and "127.0.0.1:1" in names.warnings[0]


def test_sample_batch_arrays_say_their_dtypes(bucket: Path) -> None:
    batch = BlockQuerier(BucketWorkspace.open(str(bucket)).catalog).select(ALL, 0, FAR).collect()
    assert batch.t.dtype == np.int64 and batch.v.dtype == np.uint64 and batch.offsets.dtype == np.int64
