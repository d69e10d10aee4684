"""Prometheus API JSON rendering (FORMATS.md §10.4/§10.5), checked against the strings verified on 2.42."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from thanostools.core.labels import Labels
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.render.apijson import (
    ERROR_STATUS,
    format_float_ts,
    format_sample_ts,
    format_sample_value,
    format_scalar_value,
    go_json_float,
    go_json_string,
    labels_json,
    render_error,
    render_success,
)
from thanostools.core.render.fastjson import query_data_json


@dataclass
class FakeSeries:
    labels: Labels
    t: np.ndarray
    v: np.ndarray
    h: list[FloatHistogram | None] | None = None


@dataclass
class FakeResult:
    result_type: str
    series: list[FakeSeries] = field(default_factory=list)
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None


@pytest.mark.parametrize(("ms", "text"), [
    (300000, "300"), (15250, "15.250"), (1, "0.001"), (10002, "10.002"), (-1500, "-1.500"), (0, "0"),
    (30500, "30.500"), (1_700_000_000_123, "1700000000.123"), (-1, "-0.001"),
])
def test_sample_timestamps(ms: int, text: str) -> None:
    assert format_sample_ts(ms) == text


@pytest.mark.parametrize(("ms", "text"), [(300500, "300.5"), (1234, "1.234"), (300000, "300"), (0, "0"),
                                          (1_700_000_000_100, "1700000000.1")])
def test_scalar_and_string_timestamps(ms: int, text: str) -> None:
    assert format_float_ts(ms) == text


@pytest.mark.parametrize(("v", "text"), [
    (1e-7, "1e-07"), (-1e-7, "-1e-07"), (1e-6, "0.000001"), (1e21, "1e+21"),
    (123456789012345678901.0, "123456789012345680000"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"),
    (-0.0, "-0"), (0.0, "0"), (1.5e-7, "1.5e-07"), (2.5e100, "2.5e+100"), (1.0, "1"), (0.1, "0.1"),
    (1234.5678, "1234.5678"), (1e20, "100000000000000000000"), (5e-324, "5e-324"), (-2.5, "-2.5"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (1.0000000000000002, "1.0000000000000002"),
])
def test_sample_values(v: float, text: str) -> None:
    assert format_sample_value(v) == text


@pytest.mark.parametrize(("v", "text"), [
    (1e-7, "0.0000001"), (1e21, "1000000000000000000000"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (math.nan, "NaN"), (-0.0, "-0"), (2.5, "2.5"), (-1.5e-7, "-0.00000015"),
])
def test_scalar_values_are_never_in_exponent_form(v: float, text: str) -> None:
    assert format_scalar_value(v) == text


@pytest.mark.parametrize(("v", "text"), [(1e-7, "1e-7"), (1e21, "1e+21"), (0.5, "0.5"), (1e-6, "0.000001"),
                                          (-0.0, "-0")])
def test_go_json_floats(v: float, text: str) -> None:
    assert go_json_float(v) == text


def test_strings_are_escaped_like_go() -> None:
    assert go_json_string('a<b>&"\\\n\r\t\x01\u2028é') == '"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\r\\t\\u0001\\u2028é"'
    assert json.loads(go_json_string("x\ud800")) == "x\ufffd"


def test_labels_object_in_label_order() -> None:
    assert labels_json((("__name__", "up"), ("instance", "x"), ("job", "a"))) == (
        '{"__name__":"up","instance":"x","job":"a"}')
    assert labels_json(()) == "{}"


def _matrix_series(labels: Labels, t: list[int], v: list[float]) -> FakeSeries:
    return FakeSeries(labels, np.array(t, np.int64), np.array(v, np.float64))


def test_matrix_matches_the_verified_example() -> None:
    up = (("__name__", "up"), ("instance", "x"), ("job", "a"))
    res = FakeResult("matrix", [_matrix_series(up, [0, 15250, 30500], [0, 1, 2])])
    assert render_success(query_data_json(res)) == (
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"x",'
        '"job":"a"},"values":[[0,"0"],[15.250,"1"],[30.500,"2"]]}]}}')


def test_vector_scalar_string_and_empty() -> None:
    bits = np.array([0x7FF8000000000001], np.uint64)
    vec = FakeResult("vector", [FakeSeries((), np.array([1000], np.int64), bits),
                                _matrix_series((("job", "a"),), [1001], [1e-7])])
    assert query_data_json(vec) == ('{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]},'
                                    '{"metric":{"job":"a"},"value":[1.001,"1e-07"]}]}')
    assert query_data_json(FakeResult("scalar", scalar=(300500, 1e21))) == (
        '{"resultType":"scalar","result":[300.5,"1000000000000000000000"]}')
    assert query_data_json(FakeResult("string", string=(1234, "a<b"))) == (
        '{"resultType":"string","result":[1.234,"a\\u003cb"]}')
    assert query_data_json(FakeResult("vector")) == '{"resultType":"vector","result":[]}'
    assert query_data_json(FakeResult("matrix")) == '{"resultType":"matrix","result":[]}'
    with pytest.raises(ValueError):
        query_data_json(FakeResult("scalar"))


def test_envelopes() -> None:
    assert render_success("[]") == '{"status":"success","data":[]}'
    assert render_success("{}", warnings=["w<1>"], infos=["i"]) == (
        '{"status":"success","data":{},"warnings":["w\\u003c1\\u003e"],"infos":["i"]}')
    body = render_error("bad_data", 'invalid parameter "query": 1:5: parse error: unclosed left parenthesis')
    assert body == ('{"status":"error","errorType":"bad_data","error":"invalid parameter \\"query\\": 1:5: parse '
                    'error: unclosed left parenthesis"}')
    assert json.loads(render_error("execution", "x", data_json="[]", warnings=["w"])) == {
        "status": "error", "data": [], "errorType": "execution", "error": "x", "warnings": ["w"]}
    assert ERROR_STATUS["bad_data"] == 400 and ERROR_STATUS["execution"] == 422
    assert ERROR_STATUS["canceled"] == 503 and ERROR_STATUS["timeout"] == 503 and ERROR_STATUS["internal"] == 500
