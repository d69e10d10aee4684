"""Helpers for tests: run the CLI in-process, and make realistic OpenMetrics input."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from thanostools.cli.main import cli
from thanostools.core.ingest.generate import GenerateSpec, generate_series, render_openmetrics
from thanostools.core.labels import Labels

START_MS = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, input: str | None = None) -> CliResult:
    runner = CliRunner()
    res = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    return CliResult(res.exit_code, res.stdout, res.stderr)


def special_series(start_ms: int) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """Series with awkward values: NaN, ±Inf, tiny, huge, negative, -0, irregular timestamps."""
    t = start_ms + np.array([0, 15000, 30001, 45001, 100000, 700000, 1300000, 1400000], dtype=np.int64)
    vals = [1.0, 1.0000000000000002, math.nan, math.inf, -math.inf, 1e-7, 1e21, -0.0]
    v = np.array(vals, dtype=np.float64).view(np.uint64).copy()
    v[2] = np.uint64(0x7FF8000000000001)
    t2 = start_ms + np.arange(0, 3 * 3600 * 1000, 60000, dtype=np.int64)
    v2 = (np.sin(np.arange(t2.size) / 7.0) * 1e6 + 123456.789).view(np.uint64)
    return [
        ((("__name__", "special_values"), ("kind", "edge")), t, v),
        ((("__name__", "special_values"), ("kind", "wave"), ("quote", 'a "q" \\ b')), t2, v2),
    ]


def make_openmetrics(series: int = 60, hours: float = 3.0, seed: int = 3, start_ms: int = START_MS) -> bytes:
    spec = GenerateSpec(series=series, start_ms=start_ms, duration_ms=int(hours * 3600 * 1000),
                        scrape_interval_ms=15000, seed=seed, churn=0.2)
    out = io.BytesIO()
    all_series = sorted([*generate_series(spec), *special_series(start_ms)], key=lambda s: s[0])
    render_openmetrics(all_series, out)
    return out.getvalue()


def write_openmetrics(path: Path, **kw: Any) -> Path:
    path.write_bytes(make_openmetrics(**kw))
    return path


def tree_digest(root: Path) -> str:
    """A hash of every path and file content under ``root``: proves a command changed nothing."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()
