"""Downsampling throughput: one 48h raw block → 5m, and that 5m block → 1h.

Run: .venv/bin/python bench/bench_downsample.py [--series 5000] [--repeat 3] [--workdir /tmp/tt-bench-ds]

The raw block comes from our generator (`bucket generate --duration 48h --block-duration 48h`: realistic
counters, gauges and histograms at a 15 s scrape, with churn) and is kept in the work directory between runs.
Each downsampling reads the block from local disk (mmap) and writes a complete new block; JIT compilation is
excluded by a warm-up on a small block. Reported: wall time (best of `--repeat`, first run next to it) and input
samples per second. Not a test: nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thanostools.core.chunkenc import xor  # noqa: E402
from thanostools.core.downsample import downsample_block  # noqa: E402
from thanostools.core.downsample.series import downsample_raw_batch  # noqa: E402
from thanostools.core.ingest.generate import GenerateSpec  # noqa: E402
from thanostools.core.tsdb.block import Block  # noqa: E402
from thanostools.core.workspace import BucketWorkspace  # noqa: E402

HOUR = 3_600_000
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % (48 * HOUR)


def raw_block(work: Path, series: int, hours: int = 48) -> Path:
    bucket = work / f"raw-{series}-{hours}h"
    blocks = [p for p in bucket.iterdir() if (p / "meta.json").exists()] if bucket.exists() else []
    if len(blocks) == 1:
        return blocks[0]
    shutil.rmtree(bucket, ignore_errors=True)
    spec = GenerateSpec(series=series, start_ms=START_MS, duration_ms=hours * HOUR, scrape_interval_ms=15_000,
                        seed=1, churn=0.1)
    t0 = time.perf_counter()
    (meta,) = BucketWorkspace.open(str(bucket)).generate(spec, external_labels={"cluster": "bench"},
                                                block_duration=hours * HOUR)
    print(f"generated {meta.stats.num_samples:,} samples in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return bucket / meta.ulid


def timed_downsample(block_dir: Path, target: int, out: Path, repeat: int) -> dict[str, Any]:
    times = []
    meta = None
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        block = Block.open_dir(str(block_dir))
        t0 = time.perf_counter()
        meta = downsample_block(block, target, str(out))
        times.append(time.perf_counter() - t0)
    assert meta is not None
    samples = Block.open_dir(str(block_dir)).meta.stats.num_samples
    best = min(times)
    return {"input_samples": samples, "output_samples": meta.stats.num_samples, "series": meta.stats.num_series,
            "chunks": meta.stats.num_chunks, "first_s": round(times[0], 3), "best_s": round(best, 3),
            "samples_per_s": round(samples / best), "output": str(out / meta.ulid)}


def kernel_only(block_dir: Path, repeat: int) -> dict[str, Any]:
    """Raw → 5m window aggregation and AggrChunk encoding alone, on chunks decoded beforehand."""
    block = Block.open_dir(str(block_dir))
    batches = []
    for sb in block.index.iter_series(batch_size=2000):
        chunks = block.chunks.read(sb.chunk_ref)
        dec = xor.decode_batch(chunks.buf, chunks.starts, chunks.ends)
        batches.append((dec, sb.chunk_offsets))
    samples = sum(int(d.t.shape[0]) for d, _ in batches)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for dec, offsets in batches:
            downsample_raw_batch(dec.t, dec.v, dec.offsets, offsets, 300_000)
        best = min(best, time.perf_counter() - t0)
    return {"samples": samples, "best_s": round(best, 3), "samples_per_s": round(samples / best)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/tt-bench-ds")
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    warm = raw_block(work, 20, hours=4)
    timed_downsample(warm, 300_000, work / "warm-out", 1)
    raw = raw_block(work, args.series)
    five = timed_downsample(raw, 300_000, work / "out-5m", args.repeat)
    hour = timed_downsample(Path(five["output"]), 3_600_000, work / "out-1h", args.repeat)
    kernel = kernel_only(raw, args.repeat)
    result = {"raw_to_5m": five, "5m_to_1h": hour, "raw_to_5m_kernel_only": kernel, "cpus": os.cpu_count(),
              "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
