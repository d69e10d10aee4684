"""PromQL conformance: Prometheus' promqltest scripts (shared folder) and our own, one test per script."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sharedfiles import PROMQLTEST_DIR, promqltest_scripts
from thanostools.core.promql.testrunner import ScriptReport, run_files, run_script

OURS = Path(__file__).resolve().parent / "testdata"

SHARED_SCRIPTS = promqltest_scripts()
OUR_SCRIPTS = sorted(OURS.glob("*.test"))


def _check(report: ScriptReport) -> None:
    failures = "\n".join(f"  line {o.line}: {o.expr}\n    {o.message}" for o in report.failures)
    assert (report.failed, report.skipped) == (0, 0), \
        f"{report.name}: {report.failed} failed, {report.passed} passed, {report.skipped} skipped\n{failures}"
    assert report.passed > 0 or not report.outcomes


@pytest.mark.skipif(not SHARED_SCRIPTS, reason=f"shared promqltest scripts not found at {PROMQLTEST_DIR}")
@pytest.mark.parametrize("script", SHARED_SCRIPTS, ids=lambda p: p.name)
def test_shared_script(script: Path) -> None:
    _check(run_script(script))


@pytest.mark.parametrize("script", OUR_SCRIPTS, ids=lambda p: p.name)
def test_own_script(script: Path) -> None:
    _check(run_script(script))


def test_own_scripts_exist() -> None:
    assert len(OUR_SCRIPTS) >= 5


def test_summary_line() -> None:
    summary = run_files(OUR_SCRIPTS[:1])
    assert summary.line == f"promqltest: {summary.passed} passed, {summary.failed} failed, {summary.skipped} skipped"


def test_runner_reports_failures() -> None:
    report = run_script("""load 5m
  foo{a="b"} 1 2 3

eval instant at 5m foo
  foo{a="b"} 3

eval instant at 5m foo
  expect fail

eval instant at 5m foo
  foo{a="b"} 2

eval instant at 5m foo{a="b"}
  expect info
  foo{a="b"} 2
""")
    assert [o.status for o in report.outcomes] == ["failed", "failed", "passed", "failed"]
    assert "expected 3.0" in report.outcomes[0].message


def test_runner_loads_and_compares_native_histograms() -> None:
    report = run_script("""load 5m
  h {{schema:0 sum:1 count:1 buckets:[1]}}+{{sum:2 count:2 buckets:[2]}}x3

eval instant at 10m h
  h {{schema:0 sum:5 count:5 buckets:[5]}}

eval instant at 10m h
  h {{schema:0 sum:5 count:5 buckets:[4]}}

eval instant at 10m h
  h 5

eval range from 0 to 10m step 5m h
  h {{schema:0 sum:1 count:1 buckets:[1]}} {{sum:3 count:3 buckets:[3]}} {{sum:5 count:5 buckets:[5]}}
""")
    assert [o.status for o in report.outcomes] == ["passed", "failed", "failed", "passed"]
    assert "buckets:[0:4]" in report.outcomes[1].message
