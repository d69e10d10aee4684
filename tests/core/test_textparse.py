from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.errors import ConfigError, FormatError
from thanostools.core.ingest.textparse import NAN_BITS, ParsedSamples, detect_format, parse_exposition


def bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def rows(parsed: ParsedSamples) -> list[tuple[tuple[tuple[str, str], ...], int, int]]:
    return [
        (parsed.series[i], t, v)
        for i, t, v in zip(parsed.series_index.tolist(), parsed.t.tolist(), parsed.v.tolist(), strict=True)
    ]


def om(text: str) -> bytes:
    return (text + "# EOF\n").encode()


M = (("__name__", "m"),)


# --- formats -------------------------------------------------------------------------------


def test_openmetrics_basic_with_metadata_and_exemplars() -> None:
    data = om(
        "# HELP http_requests_total Requests.\n"
        "# TYPE http_requests_total counter\n"
        "# UNIT http_requests_total requests\n"
        'http_requests_total{code="200",method="GET"} 10 1000.5\n'
        'http_requests_total{code="200",method="GET"} 12 1001 # {trace_id="abc"} 1 1000.9\n'
        'http_requests_total{code="500",method="GET"} 1 1001.25 # {trace_id="x"} 1\n'
        "up 1 1000\n"
    )
    parsed = parse_exposition(data)
    a = (("__name__", "http_requests_total"), ("code", "200"), ("method", "GET"))
    b = (("__name__", "http_requests_total"), ("code", "500"), ("method", "GET"))
    assert rows(parsed) == [
        (a, 1000500, bits(10.0)),
        (a, 1001000, bits(12.0)),
        (b, 1001250, bits(1.0)),
        ((("__name__", "up"),), 1000000, bits(1.0)),
    ]
    assert parsed.series_index.dtype == np.int32
    assert parsed.t.dtype == np.int64
    assert parsed.v.dtype == np.uint64


def test_prometheus_format_ms_timestamps_comments_and_whitespace() -> None:
    data = (
        b"# a free comment\n"
        b"# HELP m help text\n"
        b"\n"
        b'm{a="1"} 1 1500\n'
        b'm { a = "1" , } 2 1600\n'
        b"m\t3\t-1700\n"
        b'  m{a="2"}   4   +1800   \n'
    )
    parsed = parse_exposition(data)
    assert rows(parsed) == [
        ((*M, ("a", "1")), 1500, bits(1.0)),
        ((*M, ("a", "1")), 1600, bits(2.0)),
        (M, -1700, bits(3.0)),
        ((*M, ("a", "2")), 1800, bits(4.0)),
    ]
    assert parsed.series == [(*M, ("a", "1")), M, (*M, ("a", "2"))]


def test_format_detection() -> None:
    assert detect_format(b"m 1 1\n# EOF\n\n") == "openmetrics"
    assert detect_format(b"m 1 1\n# EOF") == "openmetrics"
    assert detect_format(b"m 1 1\n") == "prometheus"
    assert detect_format(b"") == "prometheus"
    # same line, different meaning: seconds vs milliseconds
    assert parse_exposition(b"m 1 2\n# EOF\n").t.tolist() == [2000]
    assert parse_exposition(b"m 1 2\n").t.tolist() == [2]
    assert parse_exposition(b"m 1 2\n# EOF\n", "prometheus").t.tolist() == [2]
    with pytest.raises(ConfigError):
        parse_exposition(b"", "json")


def test_default_timestamp() -> None:
    parsed = parse_exposition(b"m 1\nm 2 5\n", default_timestamp_ms=77)
    assert parsed.t.tolist() == [77, 5]
    with pytest.raises(FormatError, match=r"^<input>:2: .*no timestamp"):
        parse_exposition(b"m 1 1\nm 2\n")


def test_empty_input() -> None:
    parsed = parse_exposition(b"")
    assert parsed.series == [] and len(parsed) == 0
    assert len(parse_exposition(b"# EOF\n")) == 0


# --- labels --------------------------------------------------------------------------------


def test_label_escapes_and_empty_values() -> None:
    data = om('m{a="x\\\\y\\"z\\nw",b="",c="\\t"} 1 1\n')
    (labels,) = parse_exposition(data).series
    # \t is not an escape Prometheus knows: kept as written
    assert labels == (*M, ("a", 'x\\y"z\nw'), ("c", "\\t"))


def test_label_values_with_special_characters() -> None:
    data = om('m{a="}{,= #",b="ü"} 1 1\n')
    assert parse_exposition(data).series == [(*M, ("a", "}{,= #"), ("b", "ü"))]


def test_quoted_utf8_names() -> None:
    data = b'{"my.metric", "my.label"="v", a="b"} 1 1\n{__name__="x", a="1"} 2 2\n'
    assert parse_exposition(data).series == [
        (("__name__", "my.metric"), ("a", "b"), ("my.label", "v")),
        (("__name__", "x"), ("a", "1")),
    ]


def test_same_series_written_differently_is_one_series() -> None:
    parsed = parse_exposition(b'm{a="1",b="2"} 1 1\nm{b="2",a="1"} 2 2\nm{ a="1", b="2" } 3 3\n')
    assert parsed.series == [(*M, ("a", "1"), ("b", "2"))]
    assert parsed.series_index.tolist() == [0, 0, 0]


def test_many_series_interleaved() -> None:
    lines = [f'm{{i="{i}"}} {i} {ts}\n' for ts in range(3) for i in range(5000)]
    lines[7] = 'other{i="7"} 7 0\n'
    parsed = parse_exposition("".join(lines).encode())
    assert len(parsed.series) == 5001
    got = rows(parsed)
    for line, (labels, t, v) in zip(lines, got, strict=True):
        name = labels[0][1]
        value = int(struct.unpack("<d", struct.pack("<Q", v))[0])
        assert line == f'{name}{{i="{labels[1][1]}"}} {value} {t}\n'


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NaN", NAN_BITS),
        ("nan", NAN_BITS),
        ("+Inf", bits(math.inf)),
        ("Inf", bits(math.inf)),
        ("+infinity", bits(math.inf)),
        ("-Inf", bits(-math.inf)),
        ("-0", bits(-0.0)),
        ("0", 0),
        (".5", bits(0.5)),
        ("5.", bits(5.0)),
        ("+7", bits(7.0)),
        ("1e3", bits(1000.0)),
        ("1E-3", bits(0.001)),
        ("1.7976931348623157e308", bits(1.7976931348623157e308)),
        ("4.9e-324", 1),
        ("1e-400", 0),
        ("2.2250738585072011e-308", bits(2.2250738585072011e-308)),
        ("123456789012345678901234567890", bits(123456789012345678901234567890.0)),
        ("0.1000000000000000055511151231257827021181583404541015625", bits(0.1)),
        ("9007199254740993", bits(9007199254740992.0)),
        ("1.00000000000000011102230246251565404236316680908203125", bits(1.0)),
    ],
)
def test_special_and_extreme_values(text: str, expected: int) -> None:
    assert parse_exposition(f"m {text} 1\n".encode()).v.tolist() == [expected]


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=300, deadline=None)
def test_repr_floats_round_trip(x: float) -> None:
    assert parse_exposition(f"m {x!r} 1\n".encode()).v.tolist() == [bits(x)]


def test_random_decimals_match_correct_rounding() -> None:
    rng = random.Random(7)
    texts = []
    for _ in range(20000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 22)))
        cut = rng.randint(0, len(digits))
        text = f"{digits[:cut]}.{digits[cut:]}" if cut < len(digits) else digits
        if text == ".":
            text = "0"
        texts.append(f"{text}e{rng.randint(-330, 300)}" if rng.random() < 0.5 else text)
    texts = [t for t in texts if math.isfinite(float(t))]
    data = "".join(f"m {t} 0\n" for t in texts).encode()
    assert parse_exposition(data).v.tolist() == [bits(float(t)) for t in texts]


def test_openmetrics_timestamps_truncate_like_promtool() -> None:
    data = om("m 1 1.0015\nm 1 1000.0005\nm 1 1000.0015\nm 1 1e3\nm 1 -1.5\nm 1 1700000000.123\nm 1 0.0019\n")
    assert parse_exposition(data).t.tolist() == [1001, 1000000, 1000001, 1000000, -1500, 1700000000123, 1]


def test_long_timestamps_take_the_slow_path() -> None:
    parsed = parse_exposition(b"m 1 0000000000000000000000012\nm 1 1700000000.1234567890123456789\n# EOF\n")
    assert parsed.t.tolist() == [12000, 1700000000123]
    assert parse_exposition(b"m 1 -9223372036854775808\n").t.tolist() == [-(2**63)]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"m 1 1\n", r"^x\.om:1: missing '# EOF'"),
        (b"m 1 1\nm 2 2\n\n", r"^x\.om:2: missing '# EOF'"),
        (b"m 1 1\n# EOF\nm 2 2\n# EOF\n", r"^x\.om:2: data after # EOF"),
        (b"m 1 1\nm abc 2\n# EOF\n", r"^x\.om:2: invalid value 'abc'"),
        (b"m +nan 2\n# EOF\n", r"^x\.om:1: invalid value '\+nan'"),
        (b"m 1_000 2\n# EOF\n", r"^x\.om:1: invalid value '1_000'"),
        (b"m 0x10 2\n# EOF\n", r"^x\.om:1: invalid value '0x10'"),
        (b"m 1e400 2\n# EOF\n", r"^x\.om:1: invalid value \(out of range\) '1e400'"),
        (b"m 1 1\nm 1 1.2.3\n# EOF\n", r"^x\.om:2: invalid timestamp '1.2.3'"),
        (b"m 1 NaN\n# EOF\n", r"^x\.om:1: invalid timestamp 'NaN'"),
        (b"m 1 1\n\nm 1 1 1\n# EOF\n", r"^x\.om:3: unexpected text after timestamp '1'"),
        (b'm{a="1" 1 1\n# EOF\n', r"^x\.om:1: unterminated label set"),
        (b'm 1 1\nm{a="1} 1 1\nm 1 1\n# EOF\n', r"^x\.om:2: unterminated label set"),
        (b'm{a="1",a="2"} 1 1\n# EOF\n', r"^x\.om:1: invalid series: duplicate label name 'a'"),
        (b'm{a="1",,} 1 1\n# EOF\n', r"^x\.om:1: invalid series"),
        (b"m-x 1 1\n# EOF\n", r"^x\.om:1: invalid series: invalid metric name 'm-x'"),
        (b'{a="1"} 1 1\n# EOF\n', r"^x\.om:1: invalid series: metric name missing"),
        (b'm 1 1\nm{1a="1"} 1 1\n# EOF\n', r"^x\.om:2: invalid series"),
        (b"m{a=\"\xff\"} 1 1\n# EOF\n", r"^x\.om:1: invalid series: invalid UTF-8"),
        (b"# comment\nm 1 1\n# EOF\n", r"^x\.om:1: invalid comment line"),
        (b"m\n# EOF\n", r"^x\.om:1: missing value"),
    ],
)
def test_openmetrics_errors(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_exposition(data, "openmetrics", source="x.om")


def test_prometheus_errors() -> None:
    with pytest.raises(FormatError, match=r"^p:2: invalid timestamp '1\.5'"):
        parse_exposition(b"m 1 1\nm 1 1.5\n", source="p")
    with pytest.raises(FormatError, match=r"^p:1: invalid timestamp .*out of range"):
        parse_exposition(b"m 1 99999999999999999999\n", source="p")


def test_earliest_error_wins() -> None:
    # the bad series on line 2 is found after the scan stopped at line 3
    with pytest.raises(FormatError, match=r"^<input>:2: invalid series"):
        parse_exposition(b"m 1 1\nm{1=\"\"} 1 1\nm x 1\n")


def test_error_message_is_one_line() -> None:
    with pytest.raises(FormatError) as info:
        parse_exposition(b'm{a="1} 1 1\n')
    assert "\n" not in str(info.value)


# --- interoperability with promtool -------------------------------------------------------

PROMTOOL = shutil.which("promtool")


def _dump(path: Path, out: Path) -> list[tuple[str, float, int]]:
    subprocess.run([PROMTOOL or "promtool", "tsdb", "create-blocks-from", "openmetrics", str(path), str(out)],
                   check=True, capture_output=True)
    (out / "wal").mkdir(exist_ok=True)
    dump = subprocess.run([PROMTOOL or "promtool", "tsdb", "dump", str(out)], check=True, capture_output=True,
                          text=True).stdout
    result = []
    for line in dump.splitlines():
        series, value, ts = line.rsplit(" ", 2)
        result.append((series, float(value), int(ts)))
    return result


def _format_series(labels: tuple[tuple[str, str], ...]) -> str:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return "{" + ", ".join(f"{n}={quote(v)}" for n, v in labels) + "}"


@pytest.mark.promtool
@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_matches_promtool_import(tmp_path: Path) -> None:
    lines = ["# HELP req Requests.\n", "# TYPE req counter\n"]
    for i in range(40):
        ts = 1_700_000_000 + i * 15
        lines.append(f'req_total{{code="200",path="/a\\"b\\\\c"}} {i * 3} {ts}.{i:03d}\n')
        labels = 'code="500",path="/a\\"b\\\\c",e="",x="\\n"'
        lines.append(f"req_total{{{labels}}} {i / 7!r} {ts}.5 # {{t=\"1\"}} 1\n")
        lines.append(f"temp_celsius {-i * 1.25e-5!r} {ts}.0015\n")
    lines.append("special NaN 1700000000\nspecial +Inf 1700000001\nspecial -Inf 1700000002\n")
    lines.append("special 1e-320 1700000003\nspecial 1.7976931348623157e308 1700000004.999\n")
    path = tmp_path / "in.om"
    path.write_text("".join(lines) + "# EOF\n")

    parsed = parse_exposition(path.read_bytes())
    ours = sorted(
        ((_format_series(ls), struct.unpack("<d", struct.pack("<Q", v))[0], t) for ls, t, v in rows(parsed)),
        key=lambda r: (r[0], r[2]),
    )
    theirs = _dump(path, tmp_path / "out")
    assert len(ours) == len(theirs)
    for (s1, v1, t1), (s2, v2, t2) in zip(ours, sorted(theirs, key=lambda r: (r[0], r[2])), strict=True):
        assert (s1, t1) == (s2, t2)
        assert (math.isnan(v1) and math.isnan(v2)) or v1 == v2
    nan = next(v for labels, _, v in rows(parsed) if labels == (("__name__", "special"),))
    assert nan == NAN_BITS


# --- pieces scanned on several threads ------------------------------------------------------


def test_parallel_pieces_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [f'm{{i="{i % 300}"}} {i / 3!r} {1_700_000_000 + i // 300}.{i % 1000:03d}\n' for i in range(30000)]
    lines.insert(5, "# TYPE m gauge\n")
    data = ("".join(lines) + "# EOF\n").encode()
    whole = parse_exposition(data)
    monkeypatch.setattr("thanostools.core.ingest.textparse.PARALLEL_CHUNK_BYTES", 10_000)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    pieces = parse_exposition(data)
    assert pieces.series == whole.series
    for a, b in ((pieces.series_index, whole.series_index), (pieces.t, whole.t), (pieces.v, whole.v)):
        assert np.array_equal(a, b)


def test_parallel_pieces_report_global_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [f"m {i} {i}\n" for i in range(20000)]
    lines[15000] = "m bad 1\n"
    lines[12000] = 'm{a="1",a="1"} 1 1\n'
    monkeypatch.setattr("thanostools.core.ingest.textparse.PARALLEL_CHUNK_BYTES", 10_000)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with pytest.raises(FormatError, match=r"^<input>:12001: invalid series: duplicate"):
        parse_exposition("".join(lines).encode())
    lines[12000] = "m 1 1\n"
    with pytest.raises(FormatError, match=r"^<input>:15001: invalid value 'bad'"):
        parse_exposition("".join(lines).encode())
