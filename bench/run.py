"""Side-by-side benchmarks: thanos-tools vs promtool on the same data, in one run.

    .venv/bin/python bench/run.py [--series 100000] [--hours 2] [--workdir /tmp/tt-bench] [--only NAME…]

Measures wall time and peak RSS of each command as a subprocess (both tools pay their start-up),
prints a Markdown table with ratios (ours / promtool; < 1 means we are faster) and writes the
figures to bench/results/latest.json. Not a test: nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TT = [PY, "-m", "thanostools"]
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000


@dataclass
class Run:
    name: str
    seconds: float
    max_rss_mb: float


def run(name: str, cmd: list[str], *, stdout: str | None = None, cwd: Path | None = None) -> Run:
    """Run a command, return wall time and the child's peak RSS (ru_maxrss of this one child)."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    t0 = time.perf_counter()
    pid = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=cwd).pid
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - t0
    if stdout:
        out.close()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: command failed: {' '.join(cmd)}")
    return Run(name, elapsed, usage.ru_maxrss / 1024)


def best_of(n: int, name: str, cmd: list[str], **kw: object) -> Run:
    runs = [run(name, cmd, **kw) for _ in range(n)]  # type: ignore[arg-type]
    return min(runs, key=lambda r: r.seconds)


def warm_up(work: Path) -> None:
    """Compile and cache the numba kernels once (a fresh install pays this once, ~10 s), so timings
    measure steady-state work."""
    tiny = work / "warmup"
    shutil.rmtree(tiny, ignore_errors=True)
    subprocess.run([*TT, "bucket", "generate", "--bucket", str(tiny), "--series", "50", "--duration", "2h"],
                   check=True, capture_output=True)
    for args in (["dump"], ["analyze", "--extended"]):
        subprocess.run([*TT, "bucket", *args, "--bucket", str(tiny)], check=True, capture_output=True)
    om = tiny / "w.om"
    om.write_text('m{a="1"} 1 1000\nm{a="1"} 2 1015\n# EOF\n')
    subprocess.run([*TT, "bucket", "import", "--bucket", str(tiny / "imp"), str(om)], check=True, capture_output=True)


def prepare_data(work: Path, series: int, hours: float) -> tuple[Path, Path]:
    """An OpenMetrics file from our generator, and promtool's blocks made from it."""
    om = work / "input.om"
    blocks = work / "promtool-blocks"
    if not om.exists():
        code = (
            "import sys\n"
            "from thanostools.core.ingest.generate import GenerateSpec, generate_series, render_openmetrics\n"
            f"spec = GenerateSpec(series={series}, start_ms={START_MS}, duration_ms={int(hours * 3600_000)}, "
            "seed=1, churn=0.1)\n"
            f"with open({str(om)!r}, 'wb') as fh: render_openmetrics(generate_series(spec), fh)\n"
        )
        subprocess.run([PY, "-c", code], check=True)
    return om, blocks


def bench_import(work: Path, om: Path, blocks: Path) -> list[tuple[Run, Run]]:
    shutil.rmtree(blocks, ignore_errors=True)
    theirs = run("import: promtool tsdb create-blocks-from openmetrics",
                 ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)])
    ours_dir = work / "ours-import"
    shutil.rmtree(ours_dir, ignore_errors=True)
    ours = run("import: thanos-tools bucket import", [*TT, "bucket", "import", "--bucket", str(ours_dir), str(om)])
    (blocks / "wal").mkdir(exist_ok=True)
    return [(ours, theirs)]


def newest_block(blocks: Path) -> str:
    metas = [json.loads((p / "meta.json").read_text()) for p in blocks.iterdir() if (p / "meta.json").exists()]
    return max(metas, key=lambda m: m["minTime"])["ulid"]


def bench_analyze(blocks: Path) -> list[tuple[Run, Run]]:
    block = newest_block(blocks)
    pairs = []
    for extra in ([], ["--extended"]):
        label = " --extended" if extra else ""
        theirs = best_of(3, f"analyze{label}: promtool", ["promtool", "tsdb", "analyze", *extra, str(blocks), block])
        ours = best_of(3, f"analyze{label}: thanos-tools",
                       [*TT, "bucket", "analyze", "--bucket", str(blocks), "--id", block, *extra])
        pairs.append((ours, theirs))
    return pairs


def bench_dump(work: Path, blocks: Path) -> list[tuple[Run, Run]]:
    theirs = best_of(2, "dump: promtool tsdb dump", ["promtool", "tsdb", "dump", str(blocks)],
                     stdout=str(work / "theirs.dump"))
    ours = best_of(2, "dump: thanos-tools bucket dump -o prom", [*TT, "bucket", "dump", "--bucket", str(blocks)],
                   stdout=str(work / "ours.dump"))
    same = subprocess.run(["cmp", "-s", str(work / "theirs.dump"), str(work / "ours.dump")]).returncode == 0
    print(f"dump outputs identical: {same}", file=sys.stderr)
    return [(ours, theirs)]


def bench_ls(work: Path, n_blocks: int = 1000) -> Run:
    bucket = work / "ls-bucket"
    if not bucket.exists():
        code = (
            "import numpy as np\n"
            "from thanostools.core.tsdb.writer import BlockWriter\n"
            f"t = np.arange(0, 7_200_000, 60_000, dtype=np.int64)\n"
            f"for i in range({n_blocks}):\n"
            f"    w = BlockWriter({str(bucket)!r}, external_labels={{'cluster': 'c%d' % (i % 4)}})\n"
            "    w.add_samples((('__name__', 'up'), ('i', str(i))), t + i * 7_200_000, np.ones(t.size))\n"
            "    w.finish()\n"
        )
        subprocess.run([PY, "-c", code], check=True)
    return best_of(5, f"ls: thanos-tools bucket ls ({n_blocks} blocks)", [*TT, "bucket", "ls", "--bucket", str(bucket)])


def bench_xor() -> dict[str, float]:
    out = subprocess.run([PY, str(ROOT / "bench" / "bench_xor.py"), "--json"], capture_output=True, text=True,
                         check=True)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def table(pairs: list[tuple[Run, Run]]) -> str:
    lines = ["| benchmark | thanos-tools s | promtool s | ratio (ours/theirs) | RSS ours MB | RSS promtool MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for ours, theirs in pairs:
        lines.append(f"| {ours.name.split(':')[0]} | {ours.seconds:.2f} | {theirs.seconds:.2f} | "
                     f"{ours.seconds / theirs.seconds:.2f} | {ours.max_rss_mb:.0f} | {theirs.max_rss_mb:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--workdir", default="/tmp/thanos-tools-bench")
    ap.add_argument("--only", nargs="*", default=["xor", "import", "analyze", "dump", "ls"])
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env_cache = work / "cache"
    os.environ["THANOS_TOOLS_CACHE_DIR"] = str(env_cache)
    results: dict[str, object] = {"series": args.series, "hours": args.hours}
    warm_up(work)
    pairs: list[tuple[Run, Run]] = []
    if "xor" in args.only:
        results["xor"] = bench_xor()
    om, blocks = prepare_data(work, args.series, args.hours)
    if "import" in args.only or not blocks.exists():
        pairs += bench_import(work, om, blocks)
    if "analyze" in args.only:
        pairs += bench_analyze(blocks)
    if "dump" in args.only:
        pairs += bench_dump(work, blocks)
    if "ls" in args.only:
        ls = bench_ls(work)
        results["ls"] = asdict(ls)
    results["pairs"] = [{"ours": asdict(o), "theirs": asdict(t), "ratio": o.seconds / t.seconds} for o, t in pairs]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(pairs))
    if "xor" in results:
        print(f"\nXOR: {json.dumps(results['xor'])}")
    if "ls" in results:
        print(f"\nls: {results['ls']}")


if __name__ == "__main__":
    main()
