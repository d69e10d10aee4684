"""``thanos-tools tui`` source flags: bucket, --endpoint (a real StoreAPI server of ours), --url; bad combinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clihelp import run_cli
from tests.tui.tuihelp import NOW, make_bucket
from thanostools.cli.tui import _source
from thanostools.core.workspace import BucketWorkspace
from thanostools.tui.sources import BucketSource, CancelToken, HttpSource, QuerySettings, StoreSource


def test_endpoint_source_queries_a_storeapi(tmp_path: Path) -> None:
    pytest.importorskip("thanostools.server.grpc")
    from tests.grpchelp import ServerThread

    server = ServerThread(BucketWorkspace.open(str(make_bucket(tmp_path / "b"))))
    try:
        source = _source((server.address,), None, None, None, None, {})
        assert isinstance(source, StoreSource) and source.describe() == f"StoreAPI {server.address}"
        out = source.instant("count by (cluster) (up)", NOW, QuerySettings(), CancelToken())
        assert sorted((dict(s.labels)["cluster"], float(s.v[0])) for s in out.result.series) == [
            ("eu1", 2.0), ("us1", 2.0)]
        assert source.label_values("job", "up", NOW - 3_600_000, NOW) == ["api", "db"]
        assert source.metric_counts(NOW - 3_600_000, NOW)["up"] == 4
    finally:
        server.stop()


def test_source_flags(tmp_path: Path) -> None:
    bucket = make_bucket(tmp_path / "b")
    assert isinstance(_source((), None, None, None, None, {"bucket_url": str(bucket)}), BucketSource)
    assert isinstance(_source((), "http://127.0.0.1:1", None, None, None, {}), HttpSource)
    res = run_cli("tui", "--bucket", str(bucket), "--url", "http://127.0.0.1:1")
    assert res.exit_code == 2 and "choose one source" in res.stderr
    res = run_cli("tui", "--bearer-token-file", "x")
    assert res.exit_code == 2 and "go with --url" in res.stderr
    res = run_cli("tui", "--url", "localhost:9090")
    assert res.exit_code == 2 and "invalid --url" in res.stderr
