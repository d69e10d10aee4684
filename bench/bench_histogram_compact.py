"""Histogram compaction (issue 11): `thanos-tools bucket compact` vs Prometheus' compactor on native histograms.

Run: .venv/bin/python bench/bench_histogram_compact.py [--series 2000] [--workdir /tmp/tt-bench-hcompact]

Input: one day of aligned 2h blocks from `bucket generate --native-histograms` (latency histograms as integer
native histograms, schema 3), kept in the work directory between runs. The machinery is bench_compact.py's:
ours runs `bucket compact --compact.ranges 2h,6h,18h` (Prometheus' own plan) as a whole CLI process after a warm-up;
a `prometheus` server (`--enable-feature=native-histograms`) compacts a copy of the same blocks, timed from its
first logged compaction until the data dir holds the same final blocks. Then both outputs are served by
Prometheus and asked the same histogram queries (raw histogram samples across the compacted blocks, and a
`histogram_quantile` over the whole day); the answers must be identical. Results go to
bench/results/issue11/histogram_compact.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compact import HOUR, ROOT, START_MS, metas, ours, prometheus, source_blocks, warm_up
from bench_query import start_prometheus

FEATURE = "--enable-feature=native-histograms"
QUERIES = [
    # raw native-histogram samples, at the ends of the 6h and 18h compacted blocks and inside them
    *(("instant", "db_query_duration_seconds[20m]", START_MS + h * HOUR) for h in (5, 6, 12, 18, 23)),
    ("range", "histogram_quantile(0.9, sum by (job) (rate(http_request_duration_seconds[5m])))", 0),
]


def live_blocks(bucket: Path, dest: Path) -> Path:
    """The blocks of a compacted bucket that are not marked for deletion, as a Prometheus data dir."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for ulid in metas(bucket):
        if not (bucket / ulid / "deletion-mark.json").exists():
            shutil.copytree(bucket / ulid, dest / ulid)
    return dest


def answers(data: Path, work: Path) -> list[Any]:
    proc, url = start_prometheus(data, work, FEATURE)
    try:
        out = []
        for kind, q, at in QUERIES:
            if kind == "instant":
                params = {"query": q, "time": at / 1000}
                path = "query"
            else:
                params = {"query": q, "start": START_MS / 1000, "end": (START_MS + 24 * HOUR) / 1000, "step": 300}
                path = "query_range"
            with urllib.request.urlopen(f"{url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=600) as r:
                body = json.loads(r.read())
            if body.get("status") != "success":
                raise SystemExit(f"query {q!r} failed: {body}")
            out.append(body["data"])
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def histogram_samples(data: list[Any]) -> int:
    return sum(len(s.get("histograms", [])) for d in data if d["resultType"] == "matrix" for s in d["result"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--workdir", default="/tmp/tt-bench-hcompact")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = source_blocks(work, args.series, "--native-histograms")
    warm_up(work)
    mine = ours(src, work / "ours", "--compact.ranges", "2h,6h,18h")
    theirs = prometheus(src, work / "prometheus" / "data", mine["final"], FEATURE)
    ours_answers = answers(live_blocks(work / "ours", work / "ours-served"), work)
    their_answers = answers(live_blocks(work / "prometheus" / "data", work / "prometheus-served"), work)
    inputs = metas(src)
    results: dict[str, Any] = {
        "series": args.series, "input_blocks": len(inputs),
        "input_samples": sum(m["stats"]["numSamples"] for m in inputs.values()),
        "input_chunks": sum(m["stats"]["numChunks"] for m in inputs.values()),
        "ours": mine, "prometheus": theirs,
        "ratio_wall": mine["seconds"] / theirs["seconds"],
        "ratio_rss": mine["max_rss_mb"] / theirs["max_rss_mb"],
        "same_final_blocks": mine["final"] == theirs["final"],
        "same_query_answers": ours_answers == their_answers,
        "histogram_samples_compared": histogram_samples(ours_answers),
    }
    out = ROOT / "bench" / "results" / "issue11"
    out.mkdir(parents=True, exist_ok=True)
    (out / "histogram_compact.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| run | compactions | wall s | peak RSS MB |\n| --- | ---: | ---: | ---: |")
    print(f"| ours, ranges 2h,6h,18h | {mine['compactions']} | {mine['seconds']:.1f} | {mine['max_rss_mb']:.0f} |")
    print(f"| prometheus (from first compaction) | {theirs['compactions']} | {theirs['seconds']:.1f} "
          f"(sum of logged durations {theirs['compaction_seconds']:.1f}) | {theirs['max_rss_mb']:.0f} |")
    print(f"\nratio ours/prometheus: wall {results['ratio_wall']:.2f}, peak RSS {results['ratio_rss']:.2f}; "
          f"identical final blocks: {results['same_final_blocks']}; identical query answers: "
          f"{results['same_query_answers']} ({results['histogram_samples_compared']} raw histogram samples)")
    if not (results["same_final_blocks"] and results["same_query_answers"]):
        raise SystemExit("the compacted outputs differ")


if __name__ == "__main__":
    main()
