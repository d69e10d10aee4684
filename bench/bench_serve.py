"""`thanos-tools serve` under load, next to a real `prometheus` on the same blocks, in one run.

    .venv/bin/python bench/bench_serve.py [--series 100000] [--hours 6] [--runs 7] [--load-seconds 60]
                                          [--clients 32] [--workdir /tmp/thanos-tools-bench-serve]
                                          [--only latency|instant|startup|load] [--out FILE]

1. `query_range` latency through both HTTP APIs (JSON included) for the benchmark queries of
   bench_query.py, over the whole range at a 60 s step: median and p99, and their ratios.
   `instant`: the same for the high-cardinality instant selectors of INSTANT_QUERIES at the end of the data
   (issue 12 item 7: one metric of ~34 k series, a ~6 k-series regex selector).
2. Start-up to ready (`/-/ready` answers 200) on a 1,000-block bucket, for both servers.
3. 32 concurrent clients for 60 s against serve (a dashboard-like mix of instant and range queries):
   throughput, latency median/p99, errors, and serve's RSS over the run.

Prints Markdown tables; writes bench/results/serve.json. Not a test: nothing asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench_query import QUERIES, free_port, p99, start_prometheus, time_prometheus, vm_hwm_mb

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BLOCK = 7_200_000
TT = [PY, "-m", "thanostools"]

# Instant selectors returning many series (at 100 k generated series: 34,272 and 6,280 series).
INSTANT_QUERIES = {
    "one metric, 34 k series": "http_request_duration_seconds_bucket",
    "regex selector, 6 k series": 'node_cpu_seconds_total{mode=~"user|sys.*"}',
}


def generate(bucket: Path, *args: str) -> None:
    if not bucket.exists():
        subprocess.run([*TT, "bucket", "generate", "--bucket", str(bucket), "--seed", "1", *args], check=True,
                       stdout=subprocess.DEVNULL)


def time_range(bucket: Path) -> tuple[int, int]:
    metas = [json.loads(p.read_text()) for p in bucket.glob("*/meta.json")]
    return min(m["minTime"] for m in metas), max(m["maxTime"] for m in metas)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 900) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("server did not become ready")


def start_serve(bucket: Path, work: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    log = open(work / f"serve-{port}.log", "wb")  # noqa: SIM115 - lives as long as the process
    t0 = time.perf_counter()
    proc = subprocess.Popen([*TT, "serve", "--bucket", str(bucket), "--http-address", f"127.0.0.1:{port}",
                             "--grpc-address", f"127.0.0.1:{free_port()}", "--cache-dir", str(work / "cache"),
                             "--query.max-samples", "500000000", "--query.timeout", "10m", *extra],
                            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url, time.perf_counter() - t0


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- 1. latency ------------------------------------------------------------------------------------


def latency(bucket: Path, work: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    lo, hi = time_range(bucket)
    start, end, step = lo + 600_000 + 7, hi - 1, 60_000  # odd ms: no sample-aligned window edges
    prom_data = work / "prometheus-data"
    shutil.rmtree(prom_data, ignore_errors=True)
    shutil.copytree(bucket, prom_data)
    out: dict[str, dict[str, list[float]]] = {n: {} for n in QUERIES}
    proc, url = start_prometheus(prom_data, work)
    try:
        for n, q in QUERIES.items():
            time_prometheus(url, q, start, end, step, 1)  # warm-up
            out[n]["prometheus"] = time_prometheus(url, q, start, end, step, runs)
        out["_rss"] = {"prometheus": [vm_hwm_mb(proc.pid)]}
    finally:
        stop(proc)
    proc, url, _ = start_serve(bucket, work)
    try:
        for n, q in QUERIES.items():
            time_prometheus(url, q, start, end, step, 1)
            out[n]["serve"] = time_prometheus(url, q, start, end, step, runs)
        out["_rss"]["serve"] = [vm_hwm_mb(proc.pid)]
    finally:
        stop(proc)
    return out


def time_instant(url: str, q: str, at_ms: int, runs: int) -> list[float]:
    params = urllib.parse.urlencode({"query": q, "time": at_ms / 1000})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=600) as r:
            body = r.read()
        times.append(time.perf_counter() - t0)  # to the last byte, as time_prometheus
        if not body.startswith(b'{"status":"success"'):
            raise SystemExit(f"query failed: {body[:500]!r}")
    return times


def instant_latency(bucket: Path, work: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    """INSTANT_QUERIES at the end of the data through both servers, running side by side and asked in turn
    (a busy machine slows both alike)."""
    at = time_range(bucket)[1] - 1
    prom_data = work / "prometheus-data"
    shutil.rmtree(prom_data, ignore_errors=True)
    shutil.copytree(bucket, prom_data)
    out: dict[str, dict[str, list[float]]] = {n: {"prometheus": [], "serve": []} for n in INSTANT_QUERIES}
    prom, prom_url = start_prometheus(prom_data, work)
    try:
        serve, serve_url, _ = start_serve(bucket, work)
        try:
            urls = {"prometheus": prom_url, "serve": serve_url}
            for n, q in INSTANT_QUERIES.items():
                for url in urls.values():
                    time_instant(url, q, at, 2)  # warm-up
                for _ in range(runs):
                    for server, url in urls.items():
                        out[n][server] += time_instant(url, q, at, 1)
        finally:
            stop(serve)
    finally:
        stop(prom)
    return out


# --- 2. start-up -----------------------------------------------------------------------------------


def startup(work: Path) -> dict[str, float]:
    bucket = work / "bucket-1000-blocks"
    generate(bucket, "--series", "20", "--duration", "2000h", "--start", "1600000000000")
    n = len(list(bucket.glob("*/meta.json")))
    proc, _, seconds = start_serve(bucket, work)
    stop(proc)
    prom_data = work / "prometheus-1000-blocks"
    shutil.rmtree(prom_data, ignore_errors=True)
    shutil.copytree(bucket, prom_data)
    t0 = time.perf_counter()
    prom, _ = start_prometheus(prom_data, work)
    prom_seconds = time.perf_counter() - t0
    stop(prom)
    return {"blocks": n, "serve_s": seconds, "prometheus_s": prom_seconds}


# --- 3. sustained load -----------------------------------------------------------------------------


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    rss: list[float] = field(default_factory=list)


def load_mix(lo: int, hi: int) -> list[dict[str, str]]:
    """What a dashboard of a few panels asks: last-hour ranges at 60 s, instant values, label lookups."""
    end = hi - 1
    hour = {"start": f"{(end - 3_600_000) / 1000}", "end": f"{end / 1000}", "step": "60"}
    at = f"{end / 1000}"
    return [
        {"path": "/api/v1/query_range", "query": 'sum by (job) (rate(http_requests_total{job="api"}[5m]))', **hour},
        {"path": "/api/v1/query_range", "query": 'avg by (instance) (node_load1{instance=~"10.4.0.1.*"})', **hour},
        {"path": "/api/v1/query_range", "query": 'histogram_quantile(0.9, sum by (le) '
                                                 '(rate(http_request_duration_seconds_bucket{handler="/api/v1/users"}[5m])))',
         **hour},
        {"path": "/api/v1/query", "query": 'topk(5, rate(http_requests_total{code="500"}[5m]))', "time": at},
        {"path": "/api/v1/query", "query": "count(up)", "time": at},
        {"path": "/api/v1/label/job/values"},
    ]


async def run_load(url: str, pid: int, mix: list[dict[str, str]], clients: int, seconds: float) -> Load:
    import aiohttp

    result = Load()
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        rnd = random.Random(seed)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.perf_counter() < deadline:
                req = dict(rnd.choice(mix))
                path = req.pop("path")
                t0 = time.perf_counter()
                try:
                    async with session.get(url + path, params=req) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = 0
                    result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
                result.latencies.append(time.perf_counter() - t0)
                if status != 200 and status:
                    result.errors[str(status)] = result.errors.get(str(status), 0) + 1

    async def sample_rss() -> None:
        while time.perf_counter() < deadline:
            result.rss.append(rss_mb(pid))
            await asyncio.sleep(1)

    await asyncio.gather(sample_rss(), *(client(i) for i in range(clients)))
    return result


def sustained(bucket: Path, work: Path, clients: int, seconds: float) -> dict[str, object]:
    lo, hi = time_range(bucket)
    proc, url, _ = start_serve(bucket, work, "--query.max-concurrent", "8")
    try:
        mix = load_mix(lo, hi)
        for req in mix:  # warm-up
            params = {k: v for k, v in req.items() if k != "path"}
            with urllib.request.urlopen(f"{url}{req['path']}?{urllib.parse.urlencode(params)}", timeout=600) as r:
                r.read()
        res = asyncio.run(run_load(url, proc.pid, mix, clients, seconds))
        hwm = vm_hwm_mb(proc.pid)
    finally:
        stop(proc)
    lat = sorted(res.latencies)
    return {"clients": clients, "seconds": seconds, "requests": len(lat), "throughput_rps": len(lat) / seconds,
            "median_s": statistics.median(lat), "p99_s": p99(lat), "errors": res.errors,
            "rss_mb_first": res.rss[0], "rss_mb_last": res.rss[-1], "rss_mb_max": max(res.rss), "vm_hwm_mb": hwm,
            "rss_mb_per_second": res.rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--load-seconds", type=float, default=60)
    ap.add_argument("--workdir", default="/tmp/thanos-tools-bench-serve")
    ap.add_argument("--only", choices=["latency", "instant", "startup", "load"], action="append",
                    help="Run only these parts (repeatable; default all).")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve.json"), help="Results JSON file.")
    args = ap.parse_args()
    parts = set(args.only or ["latency", "instant", "startup", "load"])
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    bucket = work / "bucket"
    start_ms = (int(time.time() * 1000) - args.hours * 3_600_000 - 2 * BLOCK) // BLOCK * BLOCK
    generate(bucket, "--series", str(args.series), "--duration", f"{args.hours}h", "--start", str(start_ms))

    report: dict[str, object] = {"series": args.series, "hours": args.hours, "queries": QUERIES}
    if "latency" in parts:
        report.update(latency_report(bucket, work, args.runs))
    if "instant" in parts:
        report["instant_queries"] = INSTANT_QUERIES
        report["instant_latency"] = instant_report(bucket, work, args.runs)
    if "startup" in parts:
        up = startup(work)
        print(f"| start-up to ready, {up['blocks']} blocks | serve {up['serve_s']:.2f} s | "
              f"prometheus {up['prometheus_s']:.2f} s |\n", flush=True)
        report["startup"] = up
    if "load" in parts:
        load = sustained(bucket, work, args.clients, args.load_seconds)
        rss = load["rss_mb_per_second"]
        assert isinstance(rss, list)
        quarters = " → ".join(f"{rss[min(len(rss) - 1, len(rss) * q // 4)]:.0f}" for q in range(1, 5))
        print(f"| load: {load['clients']} clients × {load['seconds']:.0f} s | {load['requests']} requests | "
              f"{load['throughput_rps']:.1f} req/s | median {load['median_s']:.3f} s | p99 {load['p99_s']:.3f} s | "
              f"errors {load['errors'] or 0} | RSS by quarter {quarters} MB (peak {load['vm_hwm_mb']:.0f}) |")
        report["load"] = load
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.only and out.exists():  # a partial run updates the figures of the last full one
        report = {**json.loads(out.read_text()), **report}
    out.write_text(json.dumps(report, indent=2) + "\n")


def latency_report(bucket: Path, work: Path, runs: int) -> dict[str, object]:
    lat = latency(bucket, work, runs)
    rss = lat.pop("_rss")
    table = _ratio_table([(n, lat[n]["prometheus"], lat[n]["serve"]) for n in QUERIES])
    peak = f"Peak RSS: prometheus {rss['prometheus'][0]:.0f} MB, serve {rss['serve'][0]:.0f} MB"
    print(f"{table}\n\n{peak}\n", flush=True)
    return {"latency": lat, "peak_rss_mb": rss}


def instant_report(bucket: Path, work: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    lat = instant_latency(bucket, work, runs)
    print(_ratio_table([(n, lat[n]["prometheus"], lat[n]["serve"]) for n in INSTANT_QUERIES]), flush=True)
    return lat


def _ratio_table(rows: list[tuple[str, list[float], list[float]]]) -> str:
    out = ["| query | prometheus median s | serve median s | median ratio | prometheus p99 s | serve p99 s | "
           "p99 ratio |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, prom, serve in rows:
        pm, sm = statistics.median(prom), statistics.median(serve)
        pp, sp = p99(prom), p99(serve)
        out.append(f"| {name} | {pm:.3f} | {sm:.3f} | {sm / pm:.2f} | {pp:.3f} | {sp:.3f} | {sp / pp:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
