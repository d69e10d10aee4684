"""Raw XOR chunk decode/encode throughput on realistic scrape data.

Run: .venv/bin/python bench/bench_xor.py [--series 100000] [--samples 480] [--repeat 3]

Data: one third each of counters (integer increments), noisy gauges (full-precision floats) and constant
series, 15 s scrape interval with occasional millisecond jitter, cut into 120-sample chunks. Each phase is
one batch call over all chunks; JIT compilation is excluded by a warm-up call on a small slice; the best of
`--repeat` calls is reported next to the first one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from thanostools.core.chunkenc.xor import decode_batch, encode_batch

SCRAPE_MS = 15_000
SAMPLES_PER_CHUNK = 120


def make_series(
    n_series: int, n_samples: int, seed: int = 1
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Concatenated (t, v) of n_series series of n_samples each."""
    rng = np.random.default_rng(seed)
    shape = (n_series, n_samples)
    start = 1_700_000_000_000 + rng.integers(0, SCRAPE_MS, n_series)
    jitter = np.where(rng.random(shape) < 0.2, rng.integers(-3, 4, shape), 0)
    t = start[:, None] + SCRAPE_MS * np.arange(n_samples)[None, :] + jitter
    kind = np.arange(n_series) % 3
    counters = np.cumsum(rng.poisson(40.0, shape), axis=1).astype(np.float64)
    gauges = 100.0 * rng.random(n_series)[:, None] * (1.0 + 0.05 * rng.standard_normal(shape))
    constants = np.broadcast_to(rng.integers(0, 10, n_series)[:, None].astype(np.float64), shape)
    v = np.where(kind[:, None] == 0, counters, np.where(kind[:, None] == 1, gauges, constants))
    return t.reshape(-1).astype(np.int64), v.reshape(-1)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Wall times of `repeat` calls (the first one meets freshly mapped output memory) and the last result."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="Also print the figures as one JSON line.")
    args = parser.parse_args(argv)

    t, v = make_series(args.series, args.samples)
    bounds = np.arange(0, t.shape[0] + 1, SAMPLES_PER_CHUNK, dtype=np.int64)
    if bounds[-1] != t.shape[0]:
        bounds = np.append(bounds, t.shape[0])
    n = t.shape[0]

    warm = bounds[: min(len(bounds), 101)]
    wbuf, woff = encode_batch(t[: warm[-1]], v[: warm[-1]], warm)
    decode_batch(wbuf, woff[:-1], woff[1:])

    enc_times, (buf, offsets) = timed(lambda: encode_batch(t, v, bounds), args.repeat)
    dec_times, batch = timed(lambda: decode_batch(buf, offsets[:-1], offsets[1:]), args.repeat)
    if not (np.array_equal(batch.t, t) and np.array_equal(batch.v, v.view(np.uint64))):
        raise SystemExit("round trip mismatch")

    enc_s, dec_s = min(enc_times), min(dec_times)
    figures = {
        "samples": float(n),
        "chunks": float(len(bounds) - 1),
        "bytes_per_sample": buf.shape[0] / n,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "encode_samples_per_s": n / enc_s,
        "decode_samples_per_s": n / dec_s,
        "encode_first_samples_per_s": n / enc_times[0],
        "decode_first_samples_per_s": n / dec_times[0],
    }
    print(f"{args.series} series x {args.samples} samples = {n:,} samples in {len(bounds) - 1:,} chunks, "
          f"{buf.shape[0]:,} bytes ({figures['bytes_per_sample']:.2f} B/sample)")
    print(f"{'phase':<8}{'best s':>9}{'M samples/s':>13}{'1st call':>10}{'target':>8}")
    for name, times, target in (("encode", enc_times, 20), ("decode", dec_times, 50)):
        best = min(times)
        print(f"{name:<8}{best:>9.3f}{n / best / 1e6:>13.1f}{n / times[0] / 1e6:>10.1f}{target:>8}")
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
