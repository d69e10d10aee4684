"""The one home of Go-compatible renderings and Prometheus durations, checked against what Go/promtool print."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS, run_cli
from tests.fixtures_prom import needs_promtool, promtool_dump
from thanostools.core.errors import ConfigError
from thanostools.core.goformat import format_f, format_f6, go_quote, go_quote_rune
from thanostools.core.timeutil import format_duration, parse_duration_ms, prom_duration_ns
from thanostools.core.tsdb.writer import BlockWriter

# Go's strconv.Quote of each input (from the Go documentation's escaping rules).
QUOTED = [
    ("\x07", '"\\a"'),
    ("a\tb\nc", '"a\\tb\\nc"'),
    ('"\\', '"\\"\\\\"'),
    ("\x00\x1f\x7f", '"\\x00\\x1f\\x7f"'),
    ("\u0085\u00a0", '"\\u0085\\u00a0"'),
    ("é😀", '"é😀"'),
    ("\U000e0001", '"\\U000e0001"'),
    ("\udc80", '"\\x80"'),  # a byte that was not UTF-8, decoded with surrogateescape
]


@pytest.mark.parametrize(("text", "quoted"), QUOTED)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_go_quote_rune() -> None:
    assert go_quote_rune("'") == "'\\''"
    assert go_quote_rune('"') == "'\"'"
    assert go_quote_rune("") == "'�'"


@needs_promtool
def test_dump_quotes_label_values_as_promtool(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path))
    t = START_MS + np.arange(0, 60_000, 15_000, dtype=np.int64)
    values = sorted(text for text, _ in QUOTED[:-1])
    for i, value in enumerate(values):
        w.add_samples((("__name__", "m"), ("v", value)), t, np.full(t.size, float(i)))
    w.finish()
    ours = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert ours.exit_code == 0, ours.stderr
    assert ours.stdout == promtool_dump(tmp_path)


@pytest.mark.parametrize(("x", "text"), [(1e21, "1000000000000000000000"), (1e-7, "0.0000001"), (-2.5, "-2.5"),
                                         (0.1, "0.1"), (float("inf"), "+Inf")])
def test_format_f(x: float, text: str) -> None:
    assert format_f(x) == text


def test_format_f6() -> None:
    assert format_f6(1.5) == "1.500000"
    assert format_f6(float("-inf")) == "-Inf"


@pytest.mark.parametrize(("text", "ms"), [("1h30m", 5_400_000), ("2w", 1_209_600_000), ("500ms", 500), ("0", 0),
                                          ("1y2w3d4h5m6s7ms", 33_019_506_007), ("90", 90_000)])
def test_parse_duration_ms(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["30m1h", "1h1h", "1.5h", "-1h", "1hm", "", "h", "1x", "9999999999999999999y"])
def test_parse_duration_rejects_what_prometheus_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration_ms(text)


def test_duration_round_trip() -> None:
    for ms in (1, 999, 1000, 61_000, 3_600_000, 86_400_000, 604_800_000, 31_536_000_000, 33_019_506_007):
        assert prom_duration_ns(format_duration(ms)) == ms * 1_000_000


def test_cli_rejects_unordered_duration(tmp_path: Path) -> None:
    res = run_cli("bucket", "retention", "--bucket", str(tmp_path), "--retention.resolution-raw", "30m1h")
    assert res.exit_code == 2
    assert "30m1h" in res.stderr and "Traceback" not in res.stderr
