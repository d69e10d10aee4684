"""Downsampled (AggrChunk) blocks: dump picks the aggregate, analyze counts the count sub-chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import run_cli
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import build_aggr
from thanostools.core.tsdb.writer import BlockWriter

WINDOWS = np.array([299_999, 599_999, 899_999], dtype=np.int64)
AGGS = {
    "count": [4.0, 3.0, 1.0],
    "sum": [7.0, 17.0, 1.0],
    "min": [1.0, 2.0, 1.0],
    "max": [3.0, 10.0, 1.0],
}


@pytest.fixture
def downsampled(tmp_path: Path) -> Path:
    subs: list[tuple[int, bytes] | None] = [(1, xor.encode(WINDOWS, np.array(AGGS[k]))) for k in
                                             ("count", "sum", "min", "max")]
    counter_t = np.array([20_000, *WINDOWS.tolist(), 899_999], dtype=np.int64)
    subs.append((1, xor.encode(counter_t, np.array([1.0, 4.0, 13.0, 14.0, 1.0]))))
    payload = np.frombuffer(build_aggr(subs), np.uint8)
    w = BlockWriter(str(tmp_path), resolution=300_000, source="compactor", external_labels={"r": "1"},
                    min_time=0, max_time=900_000)
    w.add_chunks((("__name__", "m"),), np.array([0xFF]), payload, np.array([0, payload.size]),
                 WINDOWS[:1], WINDOWS[-1:], 8)
    w.finish()
    return tmp_path


@pytest.mark.parametrize("agg", ["count", "sum", "min", "max"])
def test_dump_aggregate(downsampled: Path, agg: str) -> None:
    res = run_cli("bucket", "dump", "--bucket", str(downsampled), "--aggregate", agg)
    assert res.exit_code == 0, res.stderr
    expected = [f'{{__name__="m"}} {v:g} {t}' for t, v in zip(WINDOWS.tolist(), AGGS[agg], strict=True)]
    assert res.stdout.splitlines() == expected


def test_dump_counter_keeps_first_and_last_raw_samples(downsampled: Path) -> None:
    res = run_cli("bucket", "dump", "--bucket", str(downsampled), "--aggregate", "counter", "-o", "json")
    assert res.json()[0]["samples"] == [[20000, "1"], [299999, "4"], [599999, "13"], [899999, "14"], [899999, "1"]]


def test_ls_and_analyze_downsampled(downsampled: Path) -> None:
    res = run_cli("bucket", "ls", "--bucket", str(downsampled), "--resolution", "5m", "-o", "wide")
    assert res.exit_code == 0 and " 5m " in res.stdout
    assert run_cli("bucket", "ls", "--bucket", str(downsampled), "--resolution", "raw", "-o", "ids").stdout == ""
    res = run_cli("bucket", "analyze", "--bucket", str(downsampled), "--extended")
    assert res.exit_code == 0, res.stderr
    assert "     10%: " + "#" * 100 in res.stdout  # the count sub-chunk has 3 samples (<= 12)
