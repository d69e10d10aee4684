"""PromQL range queries: our evaluator vs a real `prometheus` server on the same blocks, in one run.

    .venv/bin/python bench/bench_query.py [--series 100000] [--hours 6] [--workdir /tmp/thanos-tools-bench-query]

Data: `thanos-tools bucket generate` (15 s scrape). Prometheus serves a copy of the same blocks from
its data dir. For every query: median and p99 latency of Prometheus's `/api/v1/query_range` (HTTP,
JSON included), of our engine in-process (JSON rendering included, as the HTTP API would), and of
`thanos-tools query -o json` as a command (start-up included). Peak RSS of the Prometheus process
and of our in-process run. Prints a Markdown table; writes bench/results/query.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BLOCK = 7_200_000

QUERIES = {
    "sum by (job) (rate)": "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile p99": "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk": "topk(5, rate(http_requests_total[5m]))",
    "high-cardinality selector": 'count({__name__=~"http_.*"})',
    "subquery": "max_over_time(rate(http_requests_total[5m])[30m:1m])",
}

IN_PROCESS = r"""
import json, sys, time
from thanostools.core.workspace import BucketWorkspace
from thanostools.core.querier import BlockQuerier
from thanostools.core.promql.engine import PromQLEngine, QueryOptions
from thanostools.core.render.fastjson import query_data_json
data, start, end, step, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
queries = json.loads(sys.argv[6])
catalog = BucketWorkspace.open(data).catalog
opts = QueryOptions(max_samples=500_000_000)  # the same limit the prometheus server gets
out = {}
for q in queries.values():  # warm-up: kernel cache loads and first-touch costs are not steady state
    PromQLEngine(BlockQuerier(catalog), opts).range(q, start, end, step)
for name, q in queries.items():
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = PromQLEngine(BlockQuerier(catalog), opts).range(q, start, end, step)
        query_data_json(res)
        times.append(time.perf_counter() - t0)
    out[name] = times
# VmHWM of this process (ru_maxrss would include the parent's peak, inherited at fork)
out["_rss_mb"] = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 1024
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_prometheus(data: Path, work: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = work / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1h\n")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
         "--storage.tsdb.retention.time=100y", "--query.max-samples=500000000", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("prometheus did not become ready")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def time_prometheus(url: str, q: str, start: int, end: int, step: int, runs: int) -> list[float]:
    params = urllib.parse.urlencode({"query": q, "start": start / 1000, "end": end / 1000, "step": step / 1000})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=600) as r:
            body = r.read()
        # Time to the last byte: parsing a large JSON body here would add the same seconds to both sides.
        times.append(time.perf_counter() - t0)
        if not body.startswith(b'{"status":"success"'):
            raise SystemExit(f"query failed: {body[:500]!r}")
    return times


def time_cli(data: Path, q: str, start: int, end: int, step: int, runs: int) -> list[float]:
    cmd = [PY, "-m", "thanostools", "query", "--bucket", str(data), "--start", str(start), "--end", str(end),
           "--step", f"{step // 1000}s", "--max-samples", "500000000", "-o", "json", "--", q]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/thanos-tools-bench-query")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ours = work / "bucket"
    start_ms = (int(time.time() * 1000) - args.hours * 3_600_000 - 2 * BLOCK) // BLOCK * BLOCK
    if not ours.exists():
        subprocess.run([PY, "-m", "thanostools", "bucket", "generate", "--bucket", str(ours), "--series",
                        str(args.series), "--duration", f"{args.hours}h", "--start", str(start_ms), "--seed", "1"],
                       check=True, stdout=subprocess.DEVNULL)
    metas = [json.loads(p.read_text()) for p in ours.glob("*/meta.json")]
    start = min(m["minTime"] for m in metas) + 600_000 + 7  # odd ms: avoid sample-aligned window edges
    end = max(m["maxTime"] for m in metas) - 1
    step = 60_000
    prom_data = work / "prometheus-data"
    shutil.rmtree(prom_data, ignore_errors=True)
    shutil.copytree(ours, prom_data)
    proc, url = start_prometheus(prom_data, work)
    try:
        prom = {n: time_prometheus(url, q, start, end, step, args.runs) for n, q in QUERIES.items()}
        prom_rss = vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    child = subprocess.run([PY, "-c", IN_PROCESS, str(ours), str(start), str(end), str(step), str(args.runs),
                            json.dumps(QUERIES)], capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"in-process run failed: {child.stderr.strip().splitlines()[-1:]}")
    inproc = json.loads(child.stdout)
    ours_rss = inproc.pop("_rss_mb")
    cli = {n: time_cli(ours, q, start, end, step, max(2, args.runs // 2)) for n, q in QUERIES.items()}
    rows = ["| query | prometheus median s | ours in-process median s | ratio | ours p99 / prom p99 | "
            "`thanos-tools query` median s |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    results = {}
    for n in QUERIES:
        pm, om, cm = statistics.median(prom[n]), statistics.median(inproc[n]), statistics.median(cli[n])
        rows.append(f"| {n} | {pm:.3f} | {om:.3f} | {om / pm:.2f} | {p99(inproc[n]) / p99(prom[n]):.2f} | {cm:.2f} |")
        results[n] = {"prometheus": prom[n], "in_process": inproc[n], "cli": cli[n]}
    rows.append(f"\nPeak RSS: prometheus {prom_rss:.0f} MB, ours in-process {ours_rss:.0f} MB")
    print("\n".join(rows))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "query.json").write_text(json.dumps(
        {"series": args.series, "hours": args.hours, "step_ms": step, "queries": QUERIES, "results": results,
         "rss_mb": {"prometheus": prom_rss, "ours": ours_rss}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
