"""``thanos-tools query`` over buckets written by our BlockWriter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS, run_cli
from tests.core.test_querier import lab, write_downsampled, write_raw
from thanostools.core.timeutil import format_time_ms, now_ms

S = 15_000
M5 = 300_000


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    t = [START_MS + i * S for i in range(41)]  # 10 minutes
    write_raw(tmp_path, [
        (lab(__name__="up", job="api", instance="a"), t, [1.0] * 41),
        (lab(__name__="up", job="db", instance="b"), t, [0.0] * 41),
        (lab(__name__="reqs_total", job="api"), t, [float(10 * i) for i in range(41)]),
        (lab(__name__="tiny", job="api"), t, [1e-7] * 41),
    ], ext={"cluster": "c1"})
    return tmp_path


def query(bucket: Path, *args: str) -> tuple[int, str, str]:
    res = run_cli("query", "--bucket", str(bucket), *args)
    return res.exit_code, res.stdout, res.stderr


def test_instant_json_is_the_api_data_object(bucket: Path) -> None:
    code, out, err = query(bucket, "up", "--time", str(START_MS + 60_500), "-o", "json")
    assert code == 0, err
    assert out == ('{"resultType":"vector","result":['
                   '{"metric":{"__name__":"up","cluster":"c1","instance":"a","job":"api"},"value":[%s,"1"]},'
                   '{"metric":{"__name__":"up","cluster":"c1","instance":"b","job":"db"},"value":[%s,"0"]}]}\n'
                   % ((f"{(START_MS + 60_500) // 1000}.500",) * 2))


def test_instant_function_and_rfc3339_time(bucket: Path) -> None:
    at = START_MS + 5 * 60_000 + 1
    code, out, _ = query(bucket, "rate(reqs_total[2m])", "--time", format_time_ms(at), "-o", "json")
    assert code == 0
    assert out == ('{"resultType":"vector","result":[{"metric":{"cluster":"c1","job":"api"},'
                   f'"value":[{at // 1000}.001,"0.6666666666666666"]}}]}}\n')


def test_range_json_and_step_forms(bucket: Path) -> None:
    args = ("tiny", "--start", str(START_MS), "--end", str(START_MS + 30_000), "-o", "json")
    outs = {query(bucket, *args, "--step", step)[1] for step in ("15", "15s", "15.0", "15000ms")}
    assert len(outs) == 1
    base = START_MS // 1000
    assert outs.pop() == ('{"resultType":"matrix","result":[{"metric":{"__name__":"tiny","cluster":"c1","job":"api"},'
                          f'"values":[[{base},"1e-07"],[{base + 15},"1e-07"],[{base + 30},"1e-07"]]}}]}}\n')


def test_scalar_and_string_results(bucket: Path) -> None:
    code, out, _ = query(bucket, "1e-7", "--time", "1500", "-o", "json")
    assert code == 0 and out == '{"resultType":"scalar","result":[1.5,"0.0000001"]}\n'
    code, out, _ = query(bucket, '"a<b"', "--time", "1500", "-o", "json")
    assert code == 0 and out == '{"resultType":"string","result":[1.5,"a\\u003cb"]}\n'
    code, out, _ = query(bucket, "1 + 1", "--time", "1500")
    assert code == 0 and out.splitlines() == ["time                      scalar", "1970-01-01T00:00:01.500Z  2"]


def test_table_and_csv(bucket: Path) -> None:
    at = START_MS + 60_000
    code, out, _ = query(bucket, "up", "--time", str(at))
    assert code == 0
    assert out.splitlines() == [
        "metric                                     value",
        'up{cluster="c1", instance="a", job="api"}  1',
        'up{cluster="c1", instance="b", job="db"}   0',
    ]
    code, out, _ = query(bucket, "up{job='api'}", "--start", str(at), "--end", str(at + 15_000), "--step", "15s",
                         "-o", "csv")
    assert code == 0
    assert out.splitlines() == [
        "metric,timestamp,value",
        f'"up{{cluster=""c1"", instance=""a"", job=""api""}}",{at // 1000},1',
        f'"up{{cluster=""c1"", instance=""a"", job=""api""}}",{at // 1000 + 15},1',
    ]
    code, out, _ = query(bucket, "up{job='api'}", "--start", str(at), "--end", str(at + 15_000), "--step", "15s")
    assert out.splitlines()[1].split()[-2:] == [format_time_ms(at), "1"]


def test_relative_times(tmp_path: Path) -> None:
    now = now_ms()
    t = [now - 40 * 60_000 + i * S for i in range(40 * 4)]
    write_raw(tmp_path, [(lab(__name__="recent"), t, [float(i) for i in range(len(t))])])
    code, out, err = query(tmp_path, "count_over_time(recent[10m])", "--time", "now-20m", "-o", "json")
    assert code == 0, err
    assert '"40"' in out
    code, out, _ = query(tmp_path, "recent", "--start", "now-30m", "--end", "now-29m", "--step", "1m", "-o", "csv")
    assert code == 0 and len(out.splitlines()) == 3


def test_parse_and_usage_errors(bucket: Path) -> None:
    code, out, err = query(bucket, "sum(up")
    assert code == 1 and out == ""
    assert err.startswith("error: parse error: 1:7: ") and err.count("\n") == 1
    code, _, err = query(bucket, "up", "--start", str(START_MS))
    assert code == 2 and "--start, --end and --step" in err
    code, _, err = query(bucket, "up", "--time", "1", "--start", "1", "--end", "2", "--step", "1")
    assert code == 2
    code, _, err = query(bucket, "up", "--start", "1", "--end", "2", "--step", "0")
    assert code == 2 and "step" in err
    code, _, err = query(bucket, "up", "--start", "2000", "--end", "1000", "--step", "1")
    assert code == 2
    code, _, err = query(bucket, "up", "--time", "yesterday-ish")
    assert code == 2 and "invalid time" in err
    code, _, err = query(bucket, "up", "--max-source-resolution", "fast")
    assert code == 2 and "--max-source-resolution" in err


def test_eval_error_is_one_line(bucket: Path) -> None:
    # many-to-many matching: both sides have two series with the same (empty) matching labels
    code, out, err = query(bucket, "up + on() up", "--time", str(START_MS + 60_000))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1


def test_dedup_and_replica_labels(tmp_path: Path) -> None:
    s = lab(__name__="g", job="x")
    write_raw(tmp_path, [(s, [START_MS + i * S for i in range(20)], [1.0] * 20)], ext={"replica": "a"})
    write_raw(tmp_path, [(s, [START_MS + 5000 + i * S for i in range(20)], [2.0] * 20)], ext={"replica": "b"})
    at = str(START_MS + 100_000)
    code, out, _ = query(tmp_path, "g", "--time", at, "-o", "json")
    assert out.count('"metric"') == 2
    code, out, _ = query(tmp_path, "g", "--time", at, "-o", "json", "--dedup", "--replica-label", "replica")
    assert code == 0
    assert out == ('{"resultType":"vector","result":[{"metric":{"__name__":"g","job":"x"},"value":[%s,"1"]}]}\n'
                   % (int(at) // 1000))


def test_max_source_resolution(tmp_path: Path) -> None:
    t = [START_MS + i * 60_000 for i in range(60)]
    write_downsampled(tmp_path, [(lab(__name__="d"), t, [float(i % 5) for i in range(60)])], M5,
                      min_time=START_MS, max_time=START_MS + 3_600_000)
    at = str(START_MS + 3_599_000)
    expr = "max_over_time(d[1h])"
    code, out, _ = query(tmp_path, expr, "--time", at, "-o", "json")
    assert code == 0 and '"result":[]' in out  # raw only by default
    for res in ("5m", "1h", "300s"):
        code, out, _ = query(tmp_path, expr, "--time", at, "-o", "json", "--max-source-resolution", res)
        assert code == 0 and '"4"' in out, out
    code, out, _ = query(tmp_path, "count_over_time(d[1h])", "--start", at, "--end", at, "--step", "25m",
                         "--max-source-resolution", "auto", "-o", "json")
    assert code == 0 and '"12"' in out  # step/5 = 5m: twelve 5m windows
    code, out, _ = query(tmp_path, "count_over_time(d[1h])", "--time", at, "--max-source-resolution", "auto",
                         "-o", "json")
    assert '"result":[]' in out  # Thanos: auto means raw for instant queries


def test_timeout_and_lookback_options(bucket: Path) -> None:
    at = str(START_MS + 10 * 60_000 + 30_000)  # 30 s after the last sample
    code, out, _ = query(bucket, "up", "--time", at, "--lookback-delta", "20s", "-o", "json")
    assert code == 0 and out == '{"resultType":"vector","result":[]}\n'
    code, out, _ = query(bucket, "up", "--time", at, "--lookback-delta", "1m", "--timeout", "30s",
                         "--max-samples", "1000", "-o", "json")
    assert code == 0 and out.count('"metric"') == 2


def test_sample_limit(bucket: Path) -> None:
    code, _, err = query(bucket, "up[10m]", "--time", str(START_MS + 600_000), "--max-samples", "10")
    assert code == 1 and err.startswith("error: ")


def test_values_survive(tmp_path: Path) -> None:
    vals = [*np.array([0x7FF8000000000001], np.uint64).view(np.float64).tolist(), float("inf"), -0.0, 1e21]
    for i, v in enumerate(vals):
        write_raw(tmp_path, [(lab(__name__="v", i=str(i)), [START_MS], [v])])
    code, out, _ = query(tmp_path, "v", "--time", str(START_MS), "-o", "json")
    assert code == 0
    for text in ('"NaN"', '"+Inf"', '"-0"', '"1e+21"'):
        assert text in out


def test_warnings_and_infos_go_to_stderr(bucket: Path) -> None:
    at = str(START_MS + 120_000)
    code, out, err = query(bucket, "rate(up[1m])", "--time", at, "-o", "json")
    assert code == 0 and out.startswith('{"resultType":"vector"')
    assert err.startswith("info: PromQL info: metric might not be a counter")
    code, out, err = query(bucket, "sort(up)", "--start", at, "--end", at, "--step", "1m", "-o", "json")
    assert code == 0 and out.startswith('{"resultType":"matrix"')
    assert err.startswith("warning: PromQL warning: sort is ineffective for range queries")


def test_expression_starting_with_minus(bucket: Path) -> None:
    code, out, _ = query(bucket, "--time", str(START_MS), "-o", "json", "--", "-tiny")
    assert code == 0 and '"-1e-07"' in out


def test_experimental_functions_need_the_feature_flag(bucket: Path) -> None:
    at = str(START_MS + 60_000)
    code, out, err = query(bucket, 'sort_by_label(up, "job")', "--time", at)
    assert code == 1 and out == ""
    assert 'function "sort_by_label" is not enabled' in err and err.count("\n") == 1
    code, out, err = query(bucket, 'sort_by_label(up, "job")', "--time", at, "-o", "json",
                           "--enable-feature", "promql-experimental-functions")
    assert code == 0, err
    assert [s["metric"]["job"] for s in json.loads(out)["result"]] == ["api", "db"]


@pytest.mark.parametrize(("expr", "feature", "message"), [
    ("increase(reqs_total[1m] anchored)", "promql-extended-range-selectors",
     "anchored modifier is experimental and not enabled"),
    ("up + fill(0) up", "promql-binop-fill-modifiers", "binop fill modifiers are experimental and not enabled"),
])
def test_experimental_modifiers_need_their_feature_flag(bucket: Path, expr: str, feature: str, message: str) -> None:
    at = str(START_MS + 60_000)
    code, out, err = query(bucket, expr, "--time", at, "--enable-feature", "promql-experimental-functions")
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1
    code, out, err = query(bucket, expr, "--time", at, "-o", "json", "--enable-feature", feature)
    assert code == 0, err
    assert json.loads(out)["result"]


def test_first_over_time_needs_no_flag(bucket: Path) -> None:
    code, out, err = query(bucket, "first_over_time(reqs_total[1m])", "--time", str(START_MS + 60_000),
                           "-o", "json")
    assert code == 0, err
    assert json.loads(out)["result"][0]["value"][1] == "10"


def test_unknown_feature_is_a_warning(bucket: Path) -> None:
    code, out, err = query(bucket, "up", "--time", str(START_MS),
                           "--enable-feature", "no-such-thing,promql-experimental-functions")
    assert code == 0 and out
    assert err == "warning: Unknown option for --enable-feature: no-such-thing\n"


def test_stats_in_json_and_on_stderr(bucket: Path) -> None:
    at = START_MS + 5 * 60_000 + 1
    # rate(reqs_total[2m]) reads the 8 samples of its window (one series); both up series are read once each.
    code, out, err = query(bucket, "rate(reqs_total[2m]) + on() group_left sum(up)", "--time", str(at), "-o", "json",
                           "--per-step-stats")
    assert code == 0, err
    stats = json.loads(out)["stats"]
    assert list(stats["timings"]) == ["evalTotalTime", "resultSortTime", "queryPreparationTime", "innerEvalTime",
                                      "execQueueTime", "execTotalTime"]
    assert stats["samples"]["totalQueryableSamplesPerStep"] == [[at / 1000, 10]]
    assert stats["samples"]["totalQueryableSamples"] == 10
    code, out, err = query(bucket, "up", "--start", str(START_MS + 1), "--end", str(START_MS + 30_001), "--step", "15",
                           "--stats")
    assert code == 0 and "up" in out
    line = err.strip()
    assert line.startswith("stats: ")
    samples = json.loads(line.removeprefix("stats: "))["samples"]
    assert samples == {"totalQueryableSamples": 6, "peakSamples": 6}
    code, out, _ = query(bucket, "up", "--time", str(at), "-o", "json")
    assert code == 0 and "stats" not in json.loads(out)
