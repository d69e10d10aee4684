"""Compaction: `thanos-tools bucket compact` vs a `prometheus` server compacting the same blocks.

Run: .venv/bin/python bench/bench_compact.py [--series 100000] [--workdir /tmp/tt-bench-compact]

Input: one day of aligned 2h blocks from our generator (`bucket generate --series N --duration 24h`), kept in
the work directory between runs. Each contender works on its own copy:

* ours, default Thanos ranges (2h, 8h, 2d, 14d): two 4-block compactions into 8h blocks;
* ours with `--compact.ranges 2h,6h,18h`: exactly Prometheus' plan (three 3 → 6h, then 3 × 6h → 18h);
* a `prometheus` server on the data dir (same flags as the test fixture). It starts compacting about a
  minute after start-up; its time runs from the start of its first compaction (log timestamp minus the
  logged duration) until the data dir holds the final blocks and no temporary directories.

Our runs are whole CLI processes (start-up, scan, merge, verification, upload into the bucket, deletion
marks); numba kernels are warmed up first, and the copy of the input is synced to disk before the clock starts
(as it is, a minute later, when Prometheus begins). Peak RSS: ru_maxrss of our process, VmHWM of the server (both
include the touched pages of mmapped input files). Results go to bench/results/compact.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TT = [PY, "-m", "thanostools"]
HOUR = 3_600_000
DAY = 24 * HOUR
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % DAY


def sh(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def source_blocks(work: Path, series: int, *generate_flags: str) -> Path:
    src = work / "-".join(["src", str(series), *(g.strip("-") for g in generate_flags)])
    if src.exists() and len(metas(src)) == 12:
        return src
    shutil.rmtree(src, ignore_errors=True)
    t0 = time.perf_counter()
    sh([*TT, "bucket", "generate", "--bucket", str(src), "--series", str(series), "--duration", "24h",
        "--start", str(START_MS), "-o", "ids", *generate_flags])
    print(f"generated 12 blocks in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return src


def metas(bucket: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in bucket.iterdir():
        try:
            out[p.name] = json.loads((p / "meta.json").read_text())
        except (OSError, ValueError):
            continue
    return out


def warm_up(work: Path) -> None:
    tiny = work / "warm"
    shutil.rmtree(tiny, ignore_errors=True)
    sh([*TT, "bucket", "generate", "--bucket", str(tiny), "--series", "50", "--duration", "10h", "--start",
        str(START_MS)])
    sh([*TT, "bucket", "compact", "--bucket", str(tiny), "--no-dry-run", "--consistency-delay", "0s",
        "--downsampling.disable"])
    shutil.rmtree(tiny)


def ours(src: Path, dest: Path, *extra: str) -> dict[str, Any]:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    # Prometheus starts compacting a minute after start-up, when the copy has long been written back; let
    # ours start from the same state rather than compete with the write-back of 2.5 GB of fresh copy.
    os.sync()
    cmd = [*TT, "bucket", "compact", "--bucket", str(dest), "--no-dry-run", "--consistency-delay", "0s",
           "--downsampling.disable", "-o", "json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"compaction failed: {' '.join(cmd)}")
    report = json.loads(out)
    known = metas(dest)  # inputs are still there, marked for deletion
    samples = sum(known[u]["stats"]["numSamples"] for c in report["compactions"] for u in c["inputs"])
    return {"seconds": seconds, "max_rss_mb": usage.ru_maxrss / 1024, "compactions": len(report["compactions"]),
            "input_samples": samples, "merge_seconds": sum(c["seconds"] for c in report["compactions"]),
            "final": final_blocks(dest)}


def final_blocks(bucket: Path) -> list[dict[str, Any]]:
    live = [m for u, m in metas(bucket).items() if not (bucket / u / "deletion-mark.json").exists()]
    return sorted(({"minTime": m["minTime"], "maxTime": m["maxTime"], "level": m["compaction"]["level"],
                    "stats": m["stats"]} for m in live), key=lambda m: m["minTime"])


def prometheus(src: Path, dest: Path, expected: list[dict[str, Any]], *flags: str,
               timeout: float = 1800) -> dict[str, Any]:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    config = dest.parent / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\n")
    log = dest.parent / "prometheus.log"
    with open(log, "wb") as logfh:
        proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={dest}",
                                 "--web.listen-address=127.0.0.1:0", "--storage.tsdb.retention.time=100y", *flags],
                                stdout=logfh, stderr=subprocess.STDOUT)
        started = time.time()
        hwm = 0.0
        try:
            while not _done(dest, expected):
                if proc.poll() is not None or time.time() - started > timeout:
                    raise SystemExit(f"prometheus did not compact: {log.read_text()[-2000:]}")
                hwm = max(hwm, _vm_hwm_mb(proc.pid))
                time.sleep(0.1)
            finished = time.time()
            hwm = max(hwm, _vm_hwm_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    durations, first_start = _compactions(log.read_text())
    return {"seconds": finished - first_start, "compaction_seconds": sum(durations), "compactions": len(durations),
            "max_rss_mb": hwm, "final": final_blocks(dest)}


def _done(data: Path, expected: list[dict[str, Any]]) -> bool:
    if any(".tmp" in p.name for p in data.iterdir()):
        return False
    now = final_blocks(data)
    return [(m["minTime"], m["maxTime"]) for m in now] == [(m["minTime"], m["maxTime"]) for m in expected]


def _vm_hwm_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def _compactions(log: str) -> tuple[list[float], float]:
    """Durations of the logged compactions and the wall-clock start of the first one."""
    durations, starts = [], []
    for line in log.splitlines():
        if 'msg="compact blocks"' not in line:
            continue
        ts = re.search(r"ts=(\S+)", line)
        dur = re.search(r"duration=(\S+)", line)
        if ts and dur:
            seconds = _go_duration(dur.group(1))
            durations.append(seconds)
            starts.append(datetime.fromisoformat(ts.group(1).replace("Z", "+00:00")).timestamp() - seconds)
    return durations, min(starts) if starts else 0.0


def _go_duration(text: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(h|ms|µs|us|ns|m|s)", text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/tt-bench-compact")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = source_blocks(work, args.series)
    warm_up(work)
    results: dict[str, Any] = {"series": args.series, "input_blocks": 12}
    results["ours_default_ranges"] = ours(src, work / "ours-default")
    results["ours_prometheus_ranges"] = mine = ours(src, work / "ours-prom", "--compact.ranges", "2h,6h,18h")
    results["prometheus"] = theirs = prometheus(src, work / "prometheus" / "data", mine["final"])
    results["same_final_blocks"] = mine["final"] == theirs["final"]
    results["ratio_wall"] = mine["seconds"] / theirs["seconds"]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "compact.json").write_text(json.dumps(results, indent=2) + "\n")
    d = results["ours_default_ranges"]
    print("| run | compactions | wall s | peak RSS MB |\n| --- | ---: | ---: | ---: |")
    print(f"| ours, ranges 2h,8h,2d,14d | {d['compactions']} | {d['seconds']:.1f} | {d['max_rss_mb']:.0f} |")
    print(f"| ours, ranges 2h,6h,18h | {mine['compactions']} | {mine['seconds']:.1f} | {mine['max_rss_mb']:.0f} |")
    print(f"| prometheus (from first compaction) | {theirs['compactions']} | {theirs['seconds']:.1f} "
          f"(sum of logged durations {theirs['compaction_seconds']:.1f}) | {theirs['max_rss_mb']:.0f} |")
    print(f"\nratio ours/prometheus (same plan): {results['ratio_wall']:.2f}; "
          f"identical final blocks (ranges, levels, stats): {results['same_final_blocks']}")


if __name__ == "__main__":
    main()
