"""``bucket relabel`` deletions through downsampled native-histogram blocks: time ranges cut through histogram
AggrChunks (count XOR, sum and counter float-histogram sub-chunks). The output's aggregates must be the input's
restricted to the kept time ranges (both decoded here sub-chunk by sub-chunk), every chunk no interval touches
must keep its bytes, and the querier must read the result."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.clihelp import run_cli
from thanostools.core.catalog import CompactionLeftovers
from thanostools.core.chunkenc import histogram as hc
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, split_aggr
from thanostools.core.downsample import downsample_block
from thanostools.core.histograms import HistogramSample, build_batch
from thanostools.core.labels import Labels
from thanostools.core.querier import BlockQuerier
from thanostools.core.series import KIND_FLOAT, KIND_INT_HISTOGRAM, HistogramColumns, SampleBatch, SelectHints
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.tombstones import encode_tombstones
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace

RES = 300_000
HOUR = 3_600_000
MINUTE = 60_000
START = 1_700_006_400_000  # 2023-11-15T00:00:00Z
# one interval inside the second 16h chunk of each series, one across the second and third chunks
INTERVALS = [(START + 20 * HOUR + 7 * MINUTE, START + 23 * HOUR + 13 * MINUTE),
             (START + 31 * HOUR + 50 * MINUTE, START + 33 * HOUR + 3 * MINUTE)]
MATCHER = 'http_request_duration_seconds{method="POST"}'
Chunk = tuple[int, int, bytes]  # mint, maxt, AggrChunk payload


@pytest.fixture(scope="module")
def downsampled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("aggrhist")
    res = run_cli("bucket", "generate", "--bucket", str(root), "--series", "30", "--duration", "48h",
                  "--block-duration", "48h", "--scrape-interval", "120s", "--native-histograms",
                  "--start", "2023-11-15T00:00:00Z", "-o", "ids")
    assert res.exit_code == 0, res.stderr
    res = run_cli("bucket", "downsample", "--bucket", str(root), "--no-dry-run", "--passes", "1", "-o", "json")
    assert res.exit_code == 0, res.stderr
    return root, res.json()[0]["output"]


def block_chunks(path: Path) -> dict[Labels, list[Chunk]]:
    block = Block.open_dir(str(path))
    sb = block.index.series(block.index.all_postings())
    data = block.chunks.read(sb.chunk_ref)
    return {lab: [(int(sb.chunk_mint[j]), int(sb.chunk_maxt[j]), data.data(j))
                  for j in range(int(sb.chunk_offsets[i]), int(sb.chunk_offsets[i + 1]))]
            for i, lab in enumerate(sb.labels)}


def histogram_values(enc: int, data: bytes) -> tuple[int, list[tuple[int, Any]]]:
    """(chunk header, [(t, (count, zero count, sum bits, positive buckets, negative buckets))])."""
    buf = np.frombuffer(data, np.uint8)
    b = hc.decode_batch(buf, [0], [buf.shape[0]], [enc])
    out = []
    for s in range(len(b)):
        pos, neg = b.sample_buckets(s)
        ip, ineg = b.layouts.indices(int(b.layout[s]))
        hist = (float(b.count[s]), float(b.zero_count[s]), int(b.sum_bits[s]), int(b.layouts.schema[b.layout[s]]),
                dict(zip(ip, pos.tolist(), strict=True)), dict(zip(ineg, neg.tolist(), strict=True)))
        out.append((int(b.t[s]), hist))
    return int(b.header[0]), out


def aggregates(payload: bytes) -> list[tuple[int, list[tuple[int, Any]]] | None]:
    """Per aggregate: (sub-encoding, samples) or None when absent."""
    out: list[tuple[int, list[tuple[int, Any]]] | None] = []
    for sub in split_aggr(payload):
        if sub is None:
            out.append(None)
        elif sub[0] == 1:
            t, v = xor.decode(sub[1])
            out.append((1, list(zip(t.tolist(), v.tolist(), strict=True))))
        else:
            out.append((sub[0], histogram_values(sub[0], sub[1])[1]))
    return out


def deleted(t: int) -> bool:
    return any(a <= t <= b for a, b in INTERVALS)


def samples_per_aggregate(chunks: list[Chunk]) -> list[list[tuple[int, Any]]]:
    per: list[list[tuple[int, Any]]] = [[] for _ in Aggr]
    for _, _, payload in chunks:
        for a, sub in enumerate(aggregates(payload)):
            if sub is not None:
                per[a].extend(sub[1])
    return per


def is_matched(lab: Labels) -> bool:
    d = dict(lab)
    return d["__name__"] == "http_request_duration_seconds" and d.get("method") == "POST"


def matched_labels(series: dict[Labels, Any]) -> list[Labels]:
    return [lab for lab in series if is_matched(lab)]


def rewrite(downsampled: tuple[Path, str], tmp_path: Path) -> tuple[Path, str, str]:
    src, five = downsampled
    root = tmp_path / "bucket"
    shutil.copytree(src, root)
    config = tmp_path / "delete.yaml"
    ranges = ", ".join(f"{{mint: {a}, maxt: {b}}}" for a, b in INTERVALS)
    config.write_text(f"- matchers: '{MATCHER}'\n  intervals: [{ranges}]\n")
    res = run_cli("bucket", "relabel", "--bucket", str(root), "--id", five, "--delete-config-file", str(config),
                  "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    (block,) = res.json()["blocks"]
    assert block["stats"]["series_trimmed"] == 2 and block["stats"]["samples_deleted"] > 0
    return root, five, block["new_ulid"]


def test_deletion_cuts_histogram_aggr_chunks(downsampled: tuple[Path, str], tmp_path: Path) -> None:
    root, five, new = rewrite(downsampled, tmp_path)
    before, after = block_chunks(root / five), block_chunks(root / new)
    assert set(before) == set(after)
    assert len(matched_labels(before)) == 2
    cut_headers = []
    for lab, chunks in before.items():
        if not is_matched(lab):
            assert after[lab] == chunks, lab
            continue
        kept_payloads = {c[2] for c in after[lab]}
        for chunk in chunks:
            windows = [t for sub in aggregates(chunk[2]) if sub is not None for t, _ in sub[1]]
            if not any(deleted(t) for t in windows):
                assert chunk[2] in kept_payloads  # untouched: byte-identical
        expected = [[(t, v) for t, v in samples if not deleted(t)] for samples in samples_per_aggregate(chunks)]
        assert samples_per_aggregate(after[lab]) == expected, lab
        assert all(expected[a] for a in (Aggr.COUNT, Aggr.SUM, Aggr.COUNTER))
        for _, _, payload in after[lab]:
            subs = split_aggr(payload)
            assert subs[Aggr.MIN] is None and subs[Aggr.MAX] is None
            sub_sum, sub_counter = subs[Aggr.SUM], subs[Aggr.COUNTER]
            assert sub_sum is not None and sub_counter is not None
            assert sub_sum[0] == sub_counter[0] == hc.ENC_FLOAT_HISTOGRAM
            assert histogram_values(*sub_sum)[0] == hc.HEADER_GAUGE
            cut_headers.append(histogram_values(*sub_counter)[0])
    # the third chunk of each matched series lost its first windows: its counter's first histogram may now
    # follow a reset nobody knows about
    assert cut_headers.count(hc.HEADER_UNKNOWN) == 2


def querier_alone(root: Path, ulid: str, tmp_path: Path) -> BlockQuerier:
    """A querier over a bucket holding only block ``ulid``."""
    alone = tmp_path / f"alone-{ulid}"
    shutil.copytree(root / ulid, alone / ulid, ignore=shutil.ignore_patterns("deletion-mark.json"))
    catalog = BucketWorkspace.open(str(alone)).catalog.view(CompactionLeftovers())
    return BlockQuerier(catalog, max_source_resolution_ms=RES)


def select(q: BlockQuerier, func: str = "") -> SampleBatch:
    end = START + 48 * HOUR
    return q.select([], START, end, SelectHints(start=START, end=end, func=func, range=HOUR if func else 0)).collect()


def histogram_samples(batch: SampleBatch) -> dict[Labels, list[tuple[int, Any]]]:
    cols = batch.hist
    assert cols is not None
    out: dict[Labels, list[tuple[int, Any]]] = {}
    for i, lab in enumerate(batch.labels):
        for s in range(int(batch.offsets[i]), int(batch.offsets[i + 1])):
            if int(cols.kind[s]) == KIND_FLOAT:
                continue
            b, row = cols.batch_of(s), int(cols.row[s])
            pos, neg = b.sample_buckets(row)
            out.setdefault(lab, []).append((int(batch.t[s]), (float(b.count[row]), float(b.sum[row]),
                                                               pos.tolist(), neg.tolist())))
    return out


def test_querier_reads_the_cut_block(downsampled: tuple[Path, str], tmp_path: Path) -> None:
    root, five, new = rewrite(downsampled, tmp_path)
    q = querier_alone(root, new, tmp_path)
    before = histogram_samples(select(querier_alone(root, five, tmp_path)))
    after = histogram_samples(select(q))
    assert set(before) == set(after) and len(before) == 6
    for lab, samples in before.items():
        want = [(t, h) for t, h in samples if not deleted(t)] if is_matched(lab) else samples
        assert len(want) < len(samples) or not is_matched(lab)
        assert after[lab] == want, lab
    rates = histogram_samples(select(q, "rate"))
    assert set(rates) == set(after)
    for lab in matched_labels(after):
        assert not any(deleted(t) for t, _ in rates[lab])


def test_merging_overlapping_histogram_series_is_refused(downsampled: tuple[Path, str], tmp_path: Path) -> None:
    src, five = downsampled
    config = tmp_path / "relabel.yaml"
    config.write_text("- action: labeldrop\n  regex: handler\n")
    res = run_cli("bucket", "relabel", "--bucket", str(src), "--id", five, "--relabel-config-file", str(config))
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: block {five}: cannot merge overlapping downsampled native-histogram series (their histogram "
        "sums and counters would have to be re-aggregated)")


# --- series made equal by relabelling, disjoint in time, with tombstones ---------------------------------------


def disjoint_block(root: Path) -> str:
    """Two histogram series, ``v="a"`` for hours 0–20 and ``v="b"`` for hours 24–44 (every 60 s), downsampled to
    5m; the raw block is removed."""
    step, n = 60_000, 20 * 60
    labels: list[Labels] = [(("__name__", "h"), ("v", "a")), (("__name__", "h"), ("v", "b"))]
    hs = [HistogramSample(t=START + k * 24 * HOUR + i * step, count=float(3 * i + 3), zero_count=0.0, sum=float(i),
                          schema=0, positive_spans=((k, 3),), positive_buckets=(float(i), float(i + 1), float(i + 2)))
          for k in range(2) for i in range(n)]
    ints = build_batch(hs, is_float=False)
    batch = SampleBatch(labels, np.array([-1, -1]), np.array([0, n, 2 * n]), np.array([h.t for h in hs], np.int64),
                        ints.sum_bits, hist=HistogramColumns(np.full(2 * n, KIND_INT_HISTOGRAM, np.uint8),
                                                             np.arange(2 * n, dtype=np.int64), ints,
                                                             build_batch([], is_float=True)))
    raw = root / "raw"
    w = BlockWriter(str(raw), min_time=START, max_time=START + 48 * HOUR)
    w.add_sample_batch(batch)
    meta = downsample_block(Block.open_dir(str(raw / w.finish().ulid)), RES, str(root))
    shutil.rmtree(raw)
    return meta.ulid


STONES = [(START + 5 * HOUR + 3 * MINUTE, START + 6 * HOUR + 11 * MINUTE),
          (START + 30 * HOUR, START + 31 * HOUR + 7 * MINUTE)]


def test_equal_disjoint_histogram_series_lose_their_tombstones(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    five = disjoint_block(root)
    block = Block.open_dir(str(root / five))
    sb = block.index.series(block.index.all_postings())
    (root / five / "tombstones").write_bytes(encode_tombstones({int(r): STONES for r in sb.refs.tolist()}))
    before = block_chunks(root / five)
    config = tmp_path / "relabel.yaml"
    config.write_text("- action: labeldrop\n  regex: v\n")
    res = run_cli("bucket", "relabel", "--bucket", str(root), "--id", five, "--relabel-config-file", str(config),
                  "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    (out,) = res.json()["blocks"]
    after = block_chunks(root / out["new_ulid"])
    assert list(after) == [(("__name__", "h"),)]
    chunks = [c for lab in sorted(before) for c in before[lab]]
    outside = [c for c in chunks if not any(a <= c[1] and c[0] <= b for a, b in STONES)]
    assert outside and all(c in after[(("__name__", "h"),)] for c in outside)

    def kept(t: int) -> bool:
        return not any(a <= t <= b for a, b in STONES)

    expected = [[(t, v) for t, v in samples if kept(t)] for samples in samples_per_aggregate(chunks)]
    assert samples_per_aggregate(after[(("__name__", "h"),)]) == expected
    assert len(expected[Aggr.COUNT]) < sum(len(x) for x in samples_per_aggregate(chunks)[Aggr.COUNT])
    assert out["stats"]["samples_deduplicated"] == 0
