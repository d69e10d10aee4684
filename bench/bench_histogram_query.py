"""`histogram_quantile` over native histograms vs the same over classic histograms, ours and a real `prometheus`.

    .venv/bin/python bench/bench_histogram_query.py [--series 20000] [--hours 6] [--runs 5]
                                                     [--workdir /tmp/thanos-tools-bench-histquery]

Two buckets from `thanos-tools bucket generate` with the same seed and shape: classic histograms (`_bucket`
series with `le`) and native ones (`--native-histograms`: one exponential-histogram series per histogram).
For each, the p99 latency query over the whole range at a 60 s step through Prometheus's `/api/v1/query_range`
(the installed prometheus, native histograms enabled) and through our engine in-process (JSON included, as
bench_query.py measures). Prints a Markdown table; writes bench/results/histogram_query.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_query import IN_PROCESS, p99, start_prometheus, time_prometheus, vm_hwm_mb

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BLOCK = 7_200_000

QUERIES = {
    "classic": {"p99 by le": "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
                "p99 by job, le": "histogram_quantile(0.99, sum by (job, le) "
                                  "(rate(http_request_duration_seconds_bucket[5m])))"},
    "native": {"p99 by le": "histogram_quantile(0.99, sum(rate(http_request_duration_seconds[5m])))",
               "p99 by job, le": "histogram_quantile(0.99, sum by (job) (rate(http_request_duration_seconds[5m])))"},
}


def generate(bucket: Path, series: int, hours: int, start_ms: int, *extra: str) -> None:
    if not bucket.exists():
        subprocess.run([PY, "-m", "thanostools", "bucket", "generate", "--bucket", str(bucket), "--series", str(series),
                        "--duration", f"{hours}h", "--start", str(start_ms), "--seed", "1", *extra],
                       check=True, stdout=subprocess.DEVNULL)


def measure(bucket: Path, work: Path, queries: dict[str, str], runs: int) -> dict[str, object]:
    metas = [json.loads(p.read_text()) for p in bucket.glob("*/meta.json")]
    start = min(m["minTime"] for m in metas) + 600_000 + 7  # odd ms: avoid sample-aligned window edges
    end = max(m["maxTime"] for m in metas) - 1
    step = 60_000
    prom_data = work / f"prometheus-{bucket.name}"
    shutil.rmtree(prom_data, ignore_errors=True)
    shutil.copytree(bucket, prom_data)
    proc, url = start_prometheus(prom_data, work, "--enable-feature=native-histograms", "--query.timeout=30m")
    try:
        prom = {n: time_prometheus(url, q, start, end, step, runs) for n, q in queries.items()}
        prom_rss = vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    child = subprocess.run([PY, "-c", IN_PROCESS, str(bucket), str(start), str(end), str(step), str(runs),
                            json.dumps(queries)], capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"in-process run failed: {child.stderr.strip().splitlines()[-1:]}")
    ours = json.loads(child.stdout)
    ours_rss = ours.pop("_rss_mb")
    return {"prometheus": prom, "ours": ours, "rss_mb": {"prometheus": prom_rss, "ours": ours_rss}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=20_000)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/thanos-tools-bench-histquery")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    start_ms = (int(time.time() * 1000) - args.hours * 3_600_000 - 2 * BLOCK) // BLOCK * BLOCK
    generate(work / "classic", args.series, args.hours, start_ms)
    generate(work / "native", args.series, args.hours, start_ms, "--native-histograms")
    results = {kind: measure(work / kind, work, QUERIES[kind], args.runs) for kind in QUERIES}
    rows = ["| query | histograms | prometheus median s | ours median s | ratio | ours p99 / prom p99 |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]
    for kind, res in results.items():
        prom, ours = res["prometheus"], res["ours"]
        assert isinstance(prom, dict) and isinstance(ours, dict)
        for name in QUERIES[kind]:
            pm, om = statistics.median(prom[name]), statistics.median(ours[name])
            rows.append(f"| {name} | {kind} | {pm:.3f} | {om:.3f} | {om / pm:.2f} | "
                        f"{p99(ours[name]) / p99(prom[name]):.2f} |")
    for kind, res in results.items():
        rss = res["rss_mb"]
        assert isinstance(rss, dict)
        rows.append(f"\nPeak RSS ({kind}): prometheus {rss['prometheus']:.0f} MB, ours in-process {rss['ours']:.0f} MB")
    print("\n".join(rows))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "histogram_query.json").write_text(json.dumps(
        {"series": args.series, "hours": args.hours, "queries": QUERIES, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
