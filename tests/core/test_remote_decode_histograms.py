"""StoreAPI histogram chunks back to samples (``sources/decode.py``), from the chunks of a real 2.42 block."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.sharedfiles import native_histograms_dir
from thanostools._proto.store.storepb import types_pb2
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.series import KIND_FLOAT, SampleBatch
from thanostools.core.sources.decode import decode_series
from thanostools.core.tsdb.block import Block

DATA = native_histograms_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="shared native-histogram test data not present")
FAR = 2**62
STOREPB = {1: types_pb2.Chunk.XOR, 2: types_pb2.Chunk.HISTOGRAM, 3: types_pb2.Chunk.FLOAT_HISTOGRAM}


def _block() -> Block:
    assert DATA is not None
    return Block.open_dir(str(DATA / "run2" / "01M94ZPHPTYFJKBQ1PMXW21M19"))


def _chunks_of(block: Block, case: str) -> list[types_pb2.AggrChunk]:
    sb = block.index.series(block.postings([Matcher(MatchType.EQ, "case", case)]))
    read = block.chunks.read(sb.chunk_ref, check_crc=True)
    buf = np.asarray(read.buf).tobytes()
    return [types_pb2.AggrChunk(min_time=int(sb.chunk_mint[c]), max_time=int(sb.chunk_maxt[c]),
                                raw=types_pb2.Chunk(type=STOREPB[int(read.encodings[c])],
                                                    data=buf[int(read.starts[c]) : int(read.ends[c])]))
            for c in range(len(sb.chunk_ref))]


def _plain(batch: SampleBatch) -> list[tuple[int, int, int]]:
    kinds = batch.hist.kind.tolist() if batch.hist is not None else [KIND_FLOAT] * batch.t.shape[0]
    return list(zip(batch.t.tolist(), batch.v.tolist(), kinds, strict=True))


def test_mixed_series_decodes_like_the_block_and_clips_to_the_range() -> None:
    block = _block()
    chunks = _chunks_of(block, "mixed")
    want = SampleBatch.concat(list(block.select([Matcher(MatchType.EQ, "case", "mixed")], histograms=True)))
    got, warnings = decode_series([((("case", "mixed"),), chunks)], "", -FAR, FAR, histograms=True)
    assert warnings == [] and _plain(got) == _plain(want)
    assert {k for _, _, k in _plain(got)} == {0, 1, 2}
    lo, hi = int(want.t[5]), int(want.t[24])
    clipped, _ = decode_series([((("case", "mixed"),), chunks)], "", lo, hi, histograms=True)
    assert _plain(clipped) == _plain(want)[5:25]


def test_an_undecodable_histogram_chunk_is_a_warning_and_the_others_stay() -> None:
    block = _block()
    good = _chunks_of(block, "stale_first")
    bad = types_pb2.AggrChunk()
    bad.CopyFrom(good[0])
    bad.raw.data = bad.raw.data[:12]  # the bit stream ends early
    series = [((("case", "bad"),), [bad]), ((("case", "stale_first"),), good)]
    got, warnings = decode_series(series, "", -FAR, FAR, histograms=True)
    assert got.labels == [(("case", "stale_first"),)] and got.t.shape[0] == 128
    assert len(warnings) == 1
    assert re.fullmatch(rf'series {{case="bad"}}: chunk at {bad.min_time} is undecodable: bit stream ends early '
                        r"\(bit \d+ of the chunk\)", warnings[0]), warnings
