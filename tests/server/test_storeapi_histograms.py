"""Native histograms through the StoreAPI: a real ``serve`` over the shared Prometheus 2.42 blocks streams their
chunks as stored, and the remote querier (with deduplication over replicas) decodes them into the same samples
our block reader finds in the blocks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tests.core.test_dedup import reference
from tests.grpchelp import labels_of, matcher, series_of, set_external_labels, store_client, warnings_of
from tests.server.servehelp import Serve, ServeFactory
from tests.sharedfiles import native_histograms_dir
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core import labels as labelset
from thanostools.core.dedup import DedupQuerier
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.series import KIND_FLOAT, SampleBatch, SelectHints
from thanostools.core.sources.fanout import FanoutQuerier
from thanostools.core.sources.remote import RemoteStoreQuerier
from thanostools.core.storage import select_blocks
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.writer import BlockWriter

DATA = native_histograms_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="shared native-histogram test data not present")
FAR = 2**62
ALL = [Matcher(MatchType.RE, "__name__", ".+")]
RUN1 = ("01M94ZAZYBH36Q16ZZBE8Y9PW2", "01M94ZC7V80EZ83V6W2RPNME91")
RUN2 = "01M94ZPHPTYFJKBQ1PMXW21M19"
GAP_SERIES = ("nh_int_counter", "nh_float_counter")  # replica b holds them with a gap
LAG_MS = 3_000


@dataclass
class Served:
    serve: Serve
    blocks: dict[str, list[Path]]  # replica -> its block directories


def _copy_blocks(root: Path) -> list[Path]:
    assert DATA is not None
    out = []
    for ulid, run in [(u, "run1") for u in RUN1] + [(RUN2, "run2")]:
        shutil.copytree(DATA / run / ulid, root / ulid)
        set_external_labels(root / ulid, {"replica": "a"})
        out.append(root / ulid)
    return out


def _write_replica_b(root: Path, a_blocks: list[Path]) -> Path:
    """The run1 block's integer and float counters, 3 s earlier, without 10 minutes from their 100th sample."""
    block = Block.open_dir(str(a_blocks[0]))
    matchers = [Matcher(MatchType.RE, "__name__", "|".join(GAP_SERIES))]
    batch = SampleBatch.concat(list(select_blocks([block], matchers, histograms=True)))
    runs = []
    for lab, t, v, hist in batch.runs():
        keep = np.flatnonzero((t < t[100]) | (t >= t[100] + 600_000))
        assert hist is not None
        runs.append((lab, t[keep] - LAG_MS, v[keep], hist.take(keep)))
    writer = BlockWriter(str(root), external_labels={"replica": "b"}, min_time=block.meta.min_time - LAG_MS,
                         max_time=block.meta.max_time)
    writer.add_sample_batch(SampleBatch.of_runs(runs))
    return root / writer.finish().ulid


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("nh-storeapi")
    bucket = root / "bucket"
    bucket.mkdir()
    a_blocks = _copy_blocks(bucket)
    b_block = _write_replica_b(bucket, a_blocks)
    with ServeFactory(root) as factory:
        yield Served(factory("--bucket", str(bucket)), {"a": a_blocks, "b": [b_block]})


def _expected_chunks(blocks: list[Path]) -> dict[Labels, list[tuple[int, int, int, bytes]]]:
    """Per series (external labels added): (min time, max time, storepb type, payload) of every chunk."""
    storepb_type = {1: types_pb2.Chunk.XOR, 2: types_pb2.Chunk.HISTOGRAM, 3: types_pb2.Chunk.FLOAT_HISTOGRAM}
    out: dict[Labels, list[tuple[int, int, int, bytes]]] = {}
    for path in blocks:
        block = Block.open_dir(str(path))
        ext = block.meta.external_labels
        for sb in block.index.iter_series(block.postings(ALL)):
            read = block.chunks.read(sb.chunk_ref, check_crc=True)
            buf = np.asarray(read.buf).tobytes()
            for i, lab in enumerate(sb.labels):
                chunks = out.setdefault(labelset.merge(lab, ext), [])
                for c in range(int(sb.chunk_offsets[i]), int(sb.chunk_offsets[i + 1])):
                    chunks.append((int(sb.chunk_mint[c]), int(sb.chunk_maxt[c]),
                                   storepb_type[int(read.encodings[c])],
                                   buf[int(read.starts[c]) : int(read.ends[c])]))
    return {lab: sorted(chunks) for lab, chunks in out.items()}


def test_series_streams_histogram_chunks_as_stored(served: Served) -> None:
    with grpc.insecure_channel(served.serve.grpc_address) as channel:
        req = rpc_pb2.SeriesRequest(min_time=-FAR, max_time=FAR, matchers=[matcher("replica", "a")])
        frames = list(store_client(channel).Series(req, timeout=60))
    assert warnings_of(frames) == []
    got = {labels_of(s): sorted((c.min_time, c.max_time, c.raw.type, c.raw.data) for c in s.chunks)
           for s in series_of(frames)}
    want = _expected_chunks(served.blocks["a"])
    assert got == want
    types = {lab: {c[2] for c in chunks} for lab, chunks in got.items()}
    mixed = labelset.merge((("__name__", "nh_edge"), ("case", "mixed")), (("replica", "a"),))
    assert types[mixed] == {types_pb2.Chunk.XOR, types_pb2.Chunk.HISTOGRAM, types_pb2.Chunk.FLOAT_HISTOGRAM}
    assert any(types_pb2.Chunk.FLOAT_HISTOGRAM in ts for lab, ts in types.items() if lab != mixed)


def _rows(batch: SampleBatch) -> dict[Labels, list[tuple[Any, ...]]]:
    """Every sample of every series in plain form: time, value bits, kind, and a histogram's whole content."""
    out: dict[Labels, list[tuple[Any, ...]]] = {}
    for lab, t, v, hist in batch.runs():
        rows = []
        for s in range(t.shape[0]):
            row: tuple[Any, ...] = (int(t[s]), int(v[s]))
            if hist is not None and int(hist.kind[s]) != KIND_FLOAT:
                h, r = hist.batch_of(s), int(hist.row[s])
                layout = int(h.layout[r])
                pos, neg = h.sample_buckets(r)
                row += (int(hist.kind[s]), h.count[r].item(), h.zero_count[r].item(), int(h.hint[r]),
                        int(h.layouts.schema[layout]), float(h.layouts.zero_threshold[layout]),
                        h.layouts.spans(layout), tuple(h.layouts.custom(layout).tolist()),
                        tuple(pos.tolist()), tuple(neg.tolist()))
            rows.append(row)
        out[lab] = rows
    return out


def _from_blocks(blocks: list[Path], matchers: list[Matcher], mint: int = -FAR, maxt: int = FAR,
                 ) -> dict[Labels, list[tuple[Any, ...]]]:
    opened = [Block.open_dir(str(p)) for p in blocks]
    ext = opened[0].meta.external_labels
    batch = SampleBatch.concat(list(select_blocks(opened, matchers, mint, maxt, histograms=True)))
    return {labelset.merge(lab, ext): rows for lab, rows in _rows(batch).items()}


def test_remote_querier_decodes_histogram_chunks(served: Served) -> None:
    only_a = [*ALL, Matcher(MatchType.EQ, "replica", "a")]
    with RemoteStoreQuerier([served.serve.grpc_address], histograms=True) as remote:
        stream = remote.select(only_a, -FAR, FAR)
        got = stream.collect()
    assert stream.warnings == []
    assert got.hist is not None
    want = _from_blocks(served.blocks["a"], ALL)
    assert _rows(got) == want
    kinds = {int(k) for k in got.hist.kind}
    assert kinds == {0, 1, 2}


def test_fanout_merges_histogram_series(served: Served) -> None:
    """Two sources answering the same series (a store reached twice): chained into one, histograms kept."""
    only_a = [*ALL, Matcher(MatchType.EQ, "replica", "a")]
    with RemoteStoreQuerier([served.serve.grpc_address], histograms=True) as one, \
            RemoteStoreQuerier([served.serve.grpc_address], histograms=True) as two:
        single = _rows(one.select(only_a, -FAR, FAR).collect())
        stream = FanoutQuerier([one, two]).select(only_a, -FAR, FAR, batch_samples=500)
        batches = list(stream)
    assert len(batches) > 1 and all(b.hist is not None for b in batches)
    assert _rows(SampleBatch.concat(batches)) == single


def test_float_only_remote_querier_skips_histograms_with_a_warning(served: Served) -> None:
    with RemoteStoreQuerier([served.serve.grpc_address], histograms=False) as remote:
        stream = remote.select([Matcher(MatchType.EQ, "case", "mixed")], -FAR, FAR)
        got = stream.collect()
    assert got.hist is None and got.t.shape[0] == 20  # the mixed series' 20 float samples
    assert stream.warnings == ['series nh_edge{case="mixed", replica="a"}: histogram chunks skipped '
                               "(this reader handles floats only)"]


def test_dedup_keeps_histogram_rows_of_both_replicas(served: Served) -> None:
    """Replica b leads a by 3 s and misses a 10-minute stretch: b's samples are taken up to its gap, a's from then
    on (the penalty keeps a once b is back) — each with its histogram from the replica it was taken from, as the
    literal model of the penalty algorithm says. Under a counter function nothing changes: histogram sums are
    never adjusted."""
    matchers = [Matcher(MatchType.RE, "__name__", "|".join(GAP_SERIES))]
    block = Block.open_dir(str(served.blocks["a"][0]))
    mint, maxt = block.meta.min_time - LAG_MS, block.meta.max_time - 1  # replica b's block: a's first one
    a = _without_replica(_from_blocks(served.blocks["a"], matchers, mint, maxt))
    b = _without_replica(_from_blocks(served.blocks["b"], matchers, mint, maxt))
    with RemoteStoreQuerier([served.serve.grpc_address], histograms=True) as remote:
        dedup = DedupQuerier(remote, ["replica"])
        stream = dedup.select(matchers, mint, maxt)
        got = _rows(stream.collect())
        as_counter = _rows(dedup.select(matchers, mint, maxt, SelectHints(mint, maxt, func="rate")).collect())
    assert stream.warnings == []
    assert sorted(got) == sorted(a) and len(got) == 3  # two integer counters, one float counter
    for lab, rows in got.items():
        tags = reference([(r[0], i) for i, r in enumerate(a[lab])], [(r[0], -1 - i) for i, r in enumerate(b[lab])],
                         counter=False)
        assert rows == [a[lab][int(i)] if i >= 0 else b[lab][-1 - int(i)] for _, i in tags]
        assert {len(r) for r in rows} == {12}  # all histograms
        assert rows[0] == b[lab][0] and rows[-1] == a[lab][-1]  # both replicas contribute
    assert as_counter == got


def _without_replica(series: dict[Labels, list[tuple[Any, ...]]]) -> dict[Labels, list[tuple[Any, ...]]]:
    return {labelset.without(lab, ["replica"]): rows for lab, rows in series.items()}
