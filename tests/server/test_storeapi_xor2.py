"""XOR2 chunks (encoding 4) over the StoreAPI: a real ``serve`` sends them re-encoded as XOR (storepb has no XOR2
type, and Thanos cannot read it), byte for byte what it sends for the same samples stored as XOR."""

from __future__ import annotations

from pathlib import Path

import grpc

from tests.core.tsdb.test_block_xor2 import write_block
from tests.grpchelp import labels_of, matcher, series_of, store_client, warnings_of
from tests.server.servehelp import ServeFactory
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_XOR2

FAR = 2**62


def _chunks(address: str) -> dict[Labels, list[tuple[int, int, int, bytes]]]:
    with grpc.insecure_channel(address) as channel:
        req = rpc_pb2.SeriesRequest(min_time=-FAR, max_time=FAR,
                                    matchers=[matcher("__name__", ".+", types_pb2.LabelMatcher.RE)])
        frames = list(store_client(channel).Series(req, timeout=60))
    assert warnings_of(frames) == []
    return {labels_of(s): [(c.min_time, c.max_time, c.raw.type, c.raw.data) for c in s.chunks]
            for s in series_of(frames)}


def test_series_sends_xor2_chunks_as_xor(tmp_path: Path) -> None:
    ulid = write_block(tmp_path / "xor2", as_xor2=True)
    write_block(tmp_path / "xor", as_xor2=False)
    block = Block.open_dir(str(tmp_path / "xor2" / ulid))
    refs = next(iter(block.index.iter_series(block.postings([Matcher(MatchType.RE, "__name__", ".+")])))).chunk_ref
    assert (block.chunks.headers(refs).encodings == ENC_XOR2).any()
    with ServeFactory(tmp_path) as factory:
        got = _chunks(factory("--bucket", str(tmp_path / "xor2")).grpc_address)
        want = _chunks(factory("--bucket", str(tmp_path / "xor")).grpc_address)
    assert got == want
    assert len(got) == 3
    assert {c[2] for chunks in got.values() for c in chunks} == {types_pb2.Chunk.XOR}
