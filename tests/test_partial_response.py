"""Partial response is decided in one place: the same damaged bucket gives the same warnings through
``thanos-tools query``, the HTTP API of a real ``serve`` process and the TUI's bucket source, and without
partial response the same error (naming the block) from all three.

The bucket: a good block, a block whose first chunk fails its checksum (it is listed, and fails when read)
and a block whose meta.json cannot be read (it is not listed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS, run_cli
from tests.server.servehelp import ServeFactory
from thanostools.core.errors import ThanosToolsError
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace
from thanostools.tui.sources import BucketSource, CancelToken, QuerySettings

H = 3_600_000
AT_MS = START_MS + 3 * H - 1
QUERY = "sum(count_over_time(m[3h]))"


def _block(root: Path, hour: int) -> str:
    w = BlockWriter(str(root), min_time=START_MS + hour * H, max_time=START_MS + (hour + 1) * H)
    t = START_MS + hour * H + np.arange(0, H, 15_000, dtype=np.int64)
    for i in range(3):
        w.add_samples((("__name__", "m"), ("i", str(i))), t, np.ones(t.shape[0]))
    return w.finish().ulid


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(bucket, ULID of the block with a bad chunk, ULID of the block with an unreadable meta.json)."""
    root = tmp_path_factory.mktemp("partial") / "bucket"
    root.mkdir()
    _block(root, 0)
    bad_chunk, bad_meta = _block(root, 1), _block(root, 2)
    seg = root / bad_chunk / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[20] ^= 0x01
    seg.write_bytes(bytes(data))
    (root / bad_meta / "meta.json").write_text('{"version": 99}')
    return root, bad_chunk, bad_meta


@pytest.fixture(scope="module")
def serves(damaged: tuple[Path, str, str]) -> Iterator[ServeFactory]:
    with ServeFactory(damaged[0].parent) as factory:
        yield factory


def _via_query(root: Path, *flags: str) -> tuple[int, list[str], list[str]]:
    """(exit code, warnings, errors) of the query command."""
    res = run_cli("query", "--time", str(AT_MS), *flags, "--bucket", str(root), "--", QUERY)
    lines = res.stderr.splitlines()
    return (res.exit_code, [line.removeprefix("warning: ") for line in lines if line.startswith("warning: ")],
            [line.removeprefix("error: ") for line in lines if line.startswith("error: ")])


def _via_tui(root: Path, partial: bool) -> list[str]:
    source = BucketSource(BucketWorkspace.open(str(root)))
    outcome = source.instant(QUERY, AT_MS, QuerySettings(dedup=False, partial_response=partial), CancelToken())
    assert outcome.result.series[0].v.tolist() == [720.0]  # the good block alone: three series of 240 samples
    return outcome.warnings


def test_the_same_warnings_everywhere(damaged: tuple[Path, str, str], serves: ServeFactory) -> None:
    root, bad_chunk, bad_meta = damaged
    code, cli_warnings, errors = _via_query(root)
    assert code == 0 and errors == []
    body = serves("--bucket", str(root)).get("/api/v1/query", {"query": QUERY, "time": f"{AT_MS / 1000:.3f}"})
    assert body.status == 200
    http_warnings = body.json()["warnings"]
    tui_warnings = _via_tui(root, True)
    assert sorted(cli_warnings) == sorted(http_warnings) == sorted(tui_warnings)
    assert len(cli_warnings) == 2
    assert any(w.startswith(f"block {bad_meta} skipped: ") and "meta.json" in w for w in cli_warnings)
    assert any(w.startswith(f"block {bad_chunk} left out: ") and "checksum mismatch" in w for w in cli_warnings)


def test_the_same_error_everywhere_without_partial_response(damaged: tuple[Path, str, str],
                                                            serves: ServeFactory) -> None:
    root, _, bad_meta = damaged
    code, warnings, errors = _via_query(root, "--no-partial-response")
    assert code == 1 and warnings == [] and len(errors) == 1 and bad_meta in errors[0]
    _same_error_from_serve_and_tui(root, serves, errors[0])


def test_a_failing_chunk_fails_everything_without_partial_response(damaged: tuple[Path, str, str],
                                                                   serves: ServeFactory, tmp_path: Path) -> None:
    source, bad_chunk, bad_meta = damaged
    root = tmp_path / "bucket"
    shutil.copytree(source, root)
    shutil.rmtree(root / bad_meta)
    code, _, errors = _via_query(root, "--no-partial-response")
    assert code == 1 and len(errors) == 1 and bad_chunk in errors[0] and "checksum mismatch" in errors[0]
    _same_error_from_serve_and_tui(root, serves, errors[0])


def _same_error_from_serve_and_tui(root: Path, serves: ServeFactory, error: str) -> None:
    reply = serves("--bucket", str(root)).get("/api/v1/query", {"query": QUERY, "time": f"{AT_MS / 1000:.3f}",
                                                               "partial_response": "false"})
    assert reply.status >= 400 and reply.json()["error"] == error
    with pytest.raises(ThanosToolsError) as exc:
        _via_tui(root, False)
    assert str(exc.value) == error


def test_a_block_deleted_after_the_listing_is_left_out_or_fails_by_name(tmp_path: Path) -> None:
    """A compactor or an operator may delete a block between serve's sync and a query."""
    from thanostools.core.matchers import Matcher
    from thanostools.core.partial import PartialResponse
    from thanostools.core.querier import bucket_querier

    root = tmp_path / "bucket"
    root.mkdir()
    kept, gone = _block(root, 0), _block(root, 1)
    catalog = BucketWorkspace.open(str(root)).catalog
    assert {b.ulid for b in catalog.blocks()} == {kept, gone}  # listed now
    shutil.rmtree(root / gone)
    matchers = [Matcher.eq("__name__", "m")]
    stream = bucket_querier(catalog, PartialResponse(True)).select(matchers, START_MS, START_MS + 2 * H)
    batch = stream.collect()
    assert len(batch) == 3 and int(batch.offsets[-1]) == 3 * 240  # the kept block's samples only
    assert [w for w in stream.warnings if gone in w and "gone from the bucket" in w]
    with pytest.raises(ThanosToolsError, match=f"block {gone} is gone"):
        bucket_querier(catalog, PartialResponse(False)).select(matchers, START_MS, START_MS + 2 * H).collect()
