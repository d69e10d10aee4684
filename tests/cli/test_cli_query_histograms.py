"""``thanos-tools query`` over native histograms: the real 2.42 block of the shared test data (run 2), the
series ``nh_edge{case="mixed"}`` (floats, integer histograms, float histograms, floats)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.clihelp import run_cli
from tests.sharedfiles import native_histograms_dir

T0 = 1796515200000
MIXED = 'nh_edge{case="mixed"}'
# The first integer histogram of the mixed series, as Prometheus answered it (run2/api/nh_edge__mixed.raw.json).
FIRST_HISTOGRAM = {"count": "12", "sum": "10", "buckets": [
    [3, "-2.938735877055719e-39", "2.938735877055719e-39", "1"], [0, "0.7071067811865475", "1", "10"],
    [0, "2", "2.82842712474619", "1"]]}


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = native_histograms_dir()
    if data is None:
        pytest.skip("shared native-histogram test data absent")
    root = tmp_path_factory.mktemp("nh-query")
    shutil.copytree(data / "run2" / "01M94ZPHPTYFJKBQ1PMXW21M19", root / "01M94ZPHPTYFJKBQ1PMXW21M19")
    return root


def _query(bucket: Path, *args: str) -> str:
    res = run_cli("query", "--bucket", str(bucket), *args)
    assert res.exit_code == 0, res.stderr
    return res.stdout


def _range(bucket: Path, *args: str) -> str:
    """The last two float points and the first two histogram points of the mixed series."""
    return _query(bucket, MIXED, "--start", str(T0 + 80_000), "--end", str(T0 + 110_000), "--step", "10", *args)


def test_json_has_values_and_histograms(bucket: Path) -> None:
    data = json.loads(_range(bucket, "-o", "json"))
    [series] = data["result"]
    assert series["values"] == [[1796515280, "12"], [1796515290, "13.5"]]
    assert series["histograms"][0] == [1796515300, FIRST_HISTOGRAM]
    assert [p[0] for p in series["histograms"]] == [1796515300, 1796515310]


def test_instant_json_answers_histogram(bucket: Path) -> None:
    data = json.loads(_query(bucket, MIXED, "--time", str(T0 + 100_000), "-o", "json"))
    assert data["result"] == [{"metric": {"__name__": "nh_edge", "case": "mixed"},
                               "histogram": [1796515300, FIRST_HISTOGRAM]}]


def test_table_shows_a_histogram_summary(bucket: Path) -> None:
    out = _range(bucket)
    lines = out.splitlines()
    assert lines[1].split()[-1] == "12"
    assert lines[3].endswith("{count:12 sum:10 buckets:3 in [-2.939e-39,2.828]}")
    assert "{count:13 sum:11 buckets:3" in lines[4]


def test_csv_cell_holds_the_api_histogram_object(bucket: Path) -> None:
    rows = list(csv.reader(io.StringIO(_range(bucket, "-o", "csv"))))
    assert rows[0] == ["metric", "timestamp", "value"]
    assert rows[1] == ['nh_edge{case="mixed"}', "1796515280", "12"]
    assert json.loads(rows[3][2]) == FIRST_HISTOGRAM
