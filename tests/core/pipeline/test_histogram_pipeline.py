"""Native-histogram chunks through the block-rewrite pipeline (compaction, rewrite), on the real Prometheus 2.42
blocks of shared/testdata/native-histograms: untouched chunks are copied byte for byte, merged or trimmed ones
are re-encoded (HISTOGRAMS.md H9.6) and decode to exactly the samples the 2.42 server answered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_prom import StartPrometheus, native_histogram_answers, needs_prometheus
from tests.sharedfiles import NATIVE_HISTOGRAMS_DIR
from thanostools.core.chunkenc import histogram as H
from thanostools.core.chunkenc import xor
from thanostools.core.compact.merge import DEDUP_CHAIN, DEDUP_PENALTY, compact_blocks
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.downsample.block import downsample_block
from thanostools.core.labels import Labels
from thanostools.core.pipeline.read import each_series
from thanostools.core.relabel import load_deletion_requests, load_relabel_configs
from thanostools.core.render.histjson import api_histogram
from thanostools.core.rewrite import RewriteSpec, rewrite_block
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_XOR
from thanostools.core.tsdb.tombstones import encode_tombstones
from thanostools.core.tsdb.writer import BlockWriter

MAIN = "run1/01M94ZAZYBH36Q16ZZBE8Y9PW2"
SNAPSHOT = "run1/01M94ZC7V80EZ83V6W2RPNME91"
EDGE = "run2/01M94ZPHPTYFJKBQ1PMXW21M19"
EXT = {"cluster": "a"}
STALE = "stale"

pytestmark = pytest.mark.skipif(not NATIVE_HISTOGRAMS_DIR.is_dir(), reason="native-histogram test data missing")

Samples = dict[Labels, dict[int, Any]]


def copy_block(name: str, root: Path) -> Block:
    dst = root / Path(name).name
    shutil.copytree(NATIVE_HISTOGRAMS_DIR / name, dst)
    return Block.open_dir(str(dst))


def chunk_samples(enc: int, payload: bytes) -> list[tuple[int, Any]]:
    """(t, value) of one chunk: a float, STALE, or a histogram's API JSON object."""
    if enc == ENC_XOR:
        t, v = xor.decode(payload)
        bits = np.asarray(v).view(np.uint64)
        return [(int(a), STALE if int(b) == STALE_NAN_BITS else float(f))
                for a, b, f in zip(t, bits, bits.view(np.float64), strict=True)]
    buf = np.frombuffer(payload, np.uint8)
    batch = H.decode_batch(buf, [0], [len(payload)], [enc], flavor="2.42")
    stale = batch.stale
    return [(int(batch.t[s]), STALE if stale[s] else api_histogram(batch, s)) for s in range(len(batch))]


def block_chunks(block: Block) -> dict[Labels, list[tuple[int, bytes]]]:
    out: dict[Labels, list[tuple[int, bytes]]] = {}
    for s in each_series(block):
        c = s.chunks
        out[s.labels.labels(0)] = [(int(c.enc[j]), c.payload(j)) for j in range(len(c))]
    return out


def block_samples(block: Block) -> Samples:
    out: Samples = {}
    for labels, chunks in block_chunks(block).items():
        got: dict[int, Any] = {}
        for enc, payload in chunks:
            for t, v in chunk_samples(enc, payload):
                assert t not in got, (labels, t)
                got[t] = v
        out[labels] = got
    return out


def api_samples(name: str) -> Samples:
    """What the 2.42 server answered for every series of a block (stale markers are not in API answers)."""
    run = name.split("/")[0]
    out: Samples = {}
    for labels in block_chunks(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / name))):
        d = dict(labels)
        result = json.loads((NATIVE_HISTOGRAMS_DIR / run / "api" / f"{d['__name__']}__{d['case']}.raw.json")
                            .read_text())["data"]["result"][0]
        got = {round(ts * 1000): h for ts, h in result.get("histograms", [])}
        got.update({round(ts * 1000): float(v) for ts, v in result.get("values", [])})
        out[labels] = got
    return out


def live(samples: Samples) -> Samples:
    return {lab: {t: v for t, v in s.items() if v != STALE} for lab, s in samples.items()}


def histogram_chunk_sizes(block: Block) -> list[int]:
    return [len(chunk_samples(enc, p)) for chunks in block_chunks(block).values()
            for enc, p in chunks if enc != ENC_XOR]


def compact(tmp_path: Path, blocks: list[Block], dedup: str = DEDUP_CHAIN) -> tuple[Block, Any]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    res = compact_blocks(blocks, str(out), external_labels=EXT, resolution=0, dedup=dedup, batch_series=3)
    assert res.meta is not None
    return Block.open_dir(str(out / res.meta.ulid)), res.stats


def with_tombstones(path: Path, stones: dict[str, tuple[int, int]]) -> Block:
    """The block at ``path`` with tombstones ``stones`` (case label -> one deleted interval)."""
    refs = {dict(s.labels.labels(0))["case"]: int(s.refs[0]) for s in each_series(Block.open_dir(str(path)))}
    (path / "tombstones").write_bytes(encode_tombstones({refs[case]: [iv] for case, iv in stones.items()}))
    return Block.open_dir(str(path))


def test_the_blocks_decode_to_the_api_answers() -> None:
    for name in (MAIN, EDGE):
        assert live(block_samples(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / name)))) == api_samples(name)


def test_horizontal_compaction_copies_histogram_chunks_verbatim(tmp_path: Path) -> None:
    ins = [copy_block(n, tmp_path / "in") for n in (EDGE, MAIN, SNAPSHOT)]
    out, stats = compact(tmp_path, ins)
    assert stats.reencoded_chunks == 0 and stats.copied_chunks == 23 + 8 + 15
    want: dict[Labels, list[tuple[int, bytes]]] = {}
    for b in ins:
        for labels, chunks in block_chunks(b).items():
            want.setdefault(labels, []).extend(chunks)
    assert block_chunks(out) == want


@pytest.mark.parametrize("dedup", [DEDUP_CHAIN, DEDUP_PENALTY])
def test_identical_replicas_keep_their_histogram_chunks(tmp_path: Path, dedup: str) -> None:
    a = copy_block(MAIN, tmp_path / "a")
    b = copy_block(MAIN, tmp_path / "b")
    out, stats = compact(tmp_path, [a, b], dedup)
    assert stats.reencoded_chunks == 0
    assert block_chunks(out) == block_chunks(a)


T1 = 1796522400000  # run1's T0
T2 = 1796515200000  # run2's T0


def replicas_with_gaps(tmp_path: Path, name: str, t0: int) -> list[Block]:
    """Two copies of a block; each misses a different stretch of every series (tombstones)."""
    a = copy_block(name, tmp_path / "a")
    b = copy_block(name, tmp_path / "b")
    cases = {dict(lab)["case"] for lab in block_chunks(a)}
    return [with_tombstones(tmp_path / "a" / a.ulid, {c: (t0 + 500_000, t0 + 800_000) for c in cases}),
            with_tombstones(tmp_path / "b" / b.ulid, {c: (t0 + 1_500_000, t0 + 1_650_000) for c in cases})]


@pytest.mark.parametrize(("name", "t0"), [(MAIN, T1), (EDGE, T2)])
def test_chained_replicas_with_gaps_give_back_every_sample(tmp_path: Path, name: str, t0: int) -> None:
    out, stats = compact(tmp_path, replicas_with_gaps(tmp_path, name, t0))
    assert stats.reencoded_chunks > 0
    assert block_samples(out) == block_samples(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / name)))
    assert live(block_samples(out)) == api_samples(name)
    assert max(histogram_chunk_sizes(out)) <= 120
    assert out.tombstones == {}


def test_penalty_dedup_of_histogram_replicas(tmp_path: Path) -> None:
    out, _ = compact(tmp_path, replicas_with_gaps(tmp_path, MAIN, T1), DEDUP_PENALTY)
    # §8.6 on the 10 s samples: A is used up to its gap at +500 s; B's next samples must be more than two
    # intervals after A's last (+490 s), so +500 s and +510 s are skipped, then B is used to the end of those
    # overlapping chunks. B's own gap is in the next pair of chunks, merged afresh: A wins there and is complete.
    skipped = {T1 + 500_000, T1 + 510_000}
    want = {lab: {t: v for t, v in s.items() if t not in skipped}
            for lab, s in block_samples(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / MAIN))).items()}
    assert block_samples(out) == want
    assert max(histogram_chunk_sizes(out)) <= 120


def test_mixed_series_is_cut_at_every_kind_change(tmp_path: Path) -> None:
    a = copy_block(EDGE, tmp_path / "a")
    b = copy_block(EDGE, tmp_path / "b")
    a = with_tombstones(tmp_path / "a" / a.ulid, {"mixed": (T2 + 95_000, T2 + 95_000)})
    out, _ = compact(tmp_path, [a, b])
    mixed = next(chunks for lab, chunks in block_chunks(out).items() if dict(lab)["case"] == "mixed")
    assert [(enc, len(chunk_samples(enc, p))) for enc, p in mixed] == [(1, 10), (2, 10), (3, 10), (1, 10)]


def changed_copy(root: Path, case: str, at: int, new_sum: float) -> Block:
    """A copy of the main block in which the histogram at ``at`` of series ``case`` has another sum."""
    src = Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / MAIN))
    w = BlockWriter(str(root), min_time=src.meta.min_time, max_time=src.meta.max_time, external_labels=EXT)
    for labels, chunks in block_chunks(src).items():
        payloads = []
        for enc, payload in chunks:
            if dict(labels)["case"] == case and enc != ENC_XOR:
                batch = H.decode_batch(np.frombuffer(payload, np.uint8), [0], [len(payload)], [enc], flavor="2.42")
                hit = np.flatnonzero(batch.t == at)
                if hit.size:
                    batch.sum_bits[hit] = np.array([new_sum]).view(np.uint64)
                    buf, _ = H.encode_batch(batch, flavor="2.42")
                    payload = buf.tobytes()
            payloads.append((enc, payload))
        ts = [[t for t, _ in chunk_samples(e, p)] for e, p in payloads]
        sizes = [len(p) for _, p in payloads]
        w.add_chunks(labels, np.array([e for e, _ in payloads], np.int64),
                     np.frombuffer(b"".join(p for _, p in payloads), np.uint8),
                     np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.array([t[0] for t in ts]),
                     np.array([t[-1] for t in ts]), sum(len(t) for t in ts))
    meta = w.finish()
    return Block.open_dir(str(root / meta.ulid))


@pytest.mark.parametrize("changed_first", [True, False])
def test_chain_takes_the_first_input_of_equal_timestamps(tmp_path: Path, changed_first: bool) -> None:
    at = T1 + 700_000
    original = copy_block(MAIN, tmp_path / "orig")
    changed = changed_copy(tmp_path / "changed", "float", at, 1234.5)
    ins = [changed, original] if changed_first else [original, changed]
    out, stats = compact(tmp_path, ins)
    assert stats.reencoded_chunks > 0
    got = block_samples(out)
    want = block_samples(ins[0])
    assert got == want
    float_series = next(s for lab, s in got.items() if dict(lab)["case"] == "float")
    assert (float_series[at]["sum"] == "1234.5") == changed_first


def rewrite(tmp_path: Path, name: str, relabel: str, delete: str) -> Block:
    spec = RewriteSpec(tuple(load_relabel_configs(relabel)), tuple(load_deletion_requests(delete)))
    res = rewrite_block(copy_block(name, tmp_path / "in"), spec, str(tmp_path / "out"), batch_series=3)
    assert res.path is not None
    return Block.open_dir(res.path)


def test_deletion_request_trims_histogram_series(tmp_path: Path) -> None:
    lo, hi = T1 + 1_000_000, T1 + 1_300_000
    out = rewrite(tmp_path, MAIN, "[]", f"- matchers: '{{case=~\"reset|layout|float\"}}'\n"
                                        f"  intervals: [{{mint: {lo}, maxt: {hi}}}]\n")
    want = block_samples(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / MAIN)))
    for lab, s in want.items():
        if dict(lab)["case"] in ("reset", "layout", "float"):
            want[lab] = {t: v for t, v in s.items() if not lo <= t <= hi}
    assert block_samples(out) == want


def test_relabel_merges_histogram_series(tmp_path: Path) -> None:
    relabel = """
- source_labels: [__name__]
  regex: nh_tiny_float
  target_label: __name__
  replacement: nh_tiny
- source_labels: [__name__, case]
  regex: nh_tiny;.*
  target_label: case
  replacement: both
"""
    out = rewrite(tmp_path, MAIN, relabel, "[]")
    src = block_samples(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / MAIN)))
    by_case = {dict(lab)["case"]: s for lab, s in src.items()}
    got = {dict(lab)["case"]: s for lab, s in block_samples(out).items()}
    assert "worked_int" not in got and "worked_float" not in got
    # the series first in index order (nh_tiny{worked_int}) wins equal timestamps
    assert got["both"] == {**by_case["worked_float"], **by_case["worked_int"]}



@needs_prometheus
def test_prometheus_answers_the_same_for_a_merged_block(tmp_path: Path, prometheus_server: StartPrometheus) -> None:
    a = copy_block(MAIN, tmp_path / "a")
    b = copy_block(MAIN, tmp_path / "b")
    cases = {dict(lab)["case"] for lab in block_chunks(a)}
    a = with_tombstones(tmp_path / "a" / a.ulid, {c: (T1 + 500_000, T1 + 800_000) for c in cases})
    out, stats = compact(tmp_path, [a, b])
    assert stats.reencoded_chunks > 0
    original = tmp_path / "prom-original"
    merged = tmp_path / "prom-merged"
    shutil.copytree(NATIVE_HISTOGRAMS_DIR / MAIN, original / Path(MAIN).name)
    shutil.copytree(tmp_path / "out" / out.ulid, merged / out.ulid)
    answers = native_histogram_answers(prometheus_server, [original, merged], T1 + 2_890_000)
    assert answers[0][0]["data"]["result"] and answers[0] == answers[1]


def test_downsampling_a_real_block_with_a_zero_width_change_keeps_every_series(tmp_path: Path) -> None:
    """Prometheus's own block (floats, native histograms, a series whose zero bucket widens mid-chunk) downsamples:
    every series comes out and reads back (the aggregates themselves: tests/core/downsample/)."""
    block = copy_block(MAIN, tmp_path / "in")
    meta = downsample_block(block, 300_000, str(tmp_path / "out"))
    out = Block.open_dir(str(tmp_path / "out" / meta.ulid))
    assert meta.stats.num_series == block.meta.stats.num_series
    assert sum(len(b) for b in out.select([], histograms=True)) == meta.stats.num_series
