"""Native-histogram chunk decode/encode throughput (one batch call each) on the real 2.42 test chunks.

Run: .venv/bin/python bench/bench_histogram.py [--samples 1000000] [--repeat 3]

Data: every histogram chunk of shared/testdata/native-histograms (integer and float chunks, schemas -4..8,
stale markers, recoded layouts) repeated until the batch holds about ``--samples`` samples of each kind. Each
phase is one batch call per kind; JIT compilation is excluded by a warm-up call; the best of ``--repeat`` calls
is reported. Writes bench/results/histogram.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from thanostools.core.chunkenc import histogram as H
from thanostools.core.tsdb.block import Block

DATA = Path("/work/shared/testdata/native-histograms")
BLOCKS = ["run1/01M94ZAZYBH36Q16ZZBE8Y9PW2", "run1/01M94ZC7V80EZ83V6W2RPNME91", "run2/01M94ZPHPTYFJKBQ1PMXW21M19"]


def test_chunks(kinds: tuple[int, ...]) -> tuple[list[bytes], list[int]]:
    payloads: list[bytes] = []
    encodings: list[int] = []
    for name in BLOCKS:
        blk = Block.open_dir(str(DATA / name))
        sb = blk.index.series(blk.index.all_postings())
        cb = blk.chunks.read(sb.chunk_ref)
        for i, enc in enumerate(np.asarray(cb.encodings).tolist()):
            if enc in kinds:
                payloads.append(cb.data(i))
                encodings.append(enc)
    return payloads, encodings


def repeated(kinds: tuple[int, ...], target: int) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64],
                                                           NDArray[np.int64]]:
    payloads, encodings = test_chunks(kinds)
    per_round = sum((p[0] << 8) | p[1] for p in payloads)
    rounds = max(1, -(-target // per_round))
    blob = b"".join(payloads) * rounds
    sizes = np.tile([len(p) for p in payloads], rounds)
    ends = np.cumsum(sizes)
    return (np.frombuffer(blob, dtype=np.uint8), ends - sizes, ends,
            np.tile(np.array(encodings, dtype=np.int64), rounds))


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for label, kinds in (("integer", H.INT_ENCODINGS), ("float", H.FLOAT_ENCODINGS)):
        buf, starts, ends, encs = repeated(kinds, args.samples)
        H.decode_batch(buf, starts[:50], ends[:50], encs[:50])  # compile
        batch = H.decode_batch(buf, starts, ends, encs)
        H.encode_batch(H.decode_batch(buf, starts[:50], ends[:50], encs[:50]))
        n = len(batch)
        dec = best(lambda b=buf, s=starts, e=ends, c=encs: H.decode_batch(b, s, e, c), args.repeat)
        enc = best(lambda b=batch: H.encode_batch(b), args.repeat)
        out, _ = H.encode_batch(batch)  # 3.x form: the 2.x trailing bytes of two test chunks are not written
        assert out.shape[0] <= buf.shape[0]
        results[label] = {"samples": n, "chunks": int(starts.shape[0]), "buckets": int(batch.buckets.shape[0]),
                          "decode_samples_per_s": n / dec, "encode_samples_per_s": n / enc,
                          "decode_s": dec, "encode_s": enc}
        print(f"{label:8s} {n:>9,d} samples {starts.shape[0]:>7,d} chunks  decode {n / dec / 1e6:6.2f} M samples/s"
              f"  encode {n / enc / 1e6:6.2f} M samples/s")
    out_path = Path(__file__).resolve().parent / "results" / "histogram.json"
    out_path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
