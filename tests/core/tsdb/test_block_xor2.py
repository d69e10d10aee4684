"""Blocks holding XOR2 chunks (encoding 4, HISTOGRAMS.md H11.3) read like XOR blocks: ``Block.select``,
``bucket dump``, ``verify --deep``, ``analyze``; compaction writes XOR; damaged XOR2 chunks give located errors."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import run_cli
from tests.xor2_encoder import encode_xor2
from thanostools.core import labels as labelset
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr
from thanostools.core.compact.merge import compact_blocks
from thanostools.core.constants import RESOLUTION_5M, STALE_NAN_BITS
from thanostools.core.downsample.block import downsample_block
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import binary as kb
from thanostools.core.rewrite import RewriteSpec, rewrite_block
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_XOR, ENC_XOR2
from thanostools.core.tsdb.writer import BlockWriter

T0 = 1_700_006_400_000
H2 = 7_200_000
NAN_BITS = 0x7FF8000000000001


def _bits(x: float) -> int:
    return int(struct.unpack(">Q", struct.pack(">d", x))[0])


def _series() -> list[tuple[dict[str, str], list[tuple[np.ndarray, np.ndarray, list[int] | None]]]]:
    """Per series: its chunks as (t, value bits, start timestamps or None)."""
    rng = np.random.default_rng(7)
    t = T0 + 15_000 * np.arange(350, dtype=np.int64) + rng.integers(-40, 40, 350)
    t[200:] += 7  # a timestamp jump: a non-zero dod in the middle of a chunk
    specials = [_bits(v) for v in (float("inf"), float("-inf"), 0.0, -0.0, 1e-300)] + [NAN_BITS, STALE_NAN_BITS]
    v = np.array([_bits(float(i // 3)) if i % 11 else specials[i % 7] for i in range(350)], dtype=np.uint64)
    st_a = [T0 - 60_000] * 150
    st_b = [T0 - 60_000 if i < 90 else T0 + 2_000_000 for i in range(200)]
    short = np.array([T0 + 1000, T0 + 2000, T0 + 3000], dtype=np.int64)
    return [
        ({"__name__": "xor2_demo", "case": "long"}, [(t[:150], v[:150], st_a), (t[150:], v[150:], st_b)]),
        ({"__name__": "xor2_demo", "case": "one"}, [(t[:1], np.array([_bits(2.5)], np.uint64), None)]),
        ({"__name__": "xor2_demo", "case": "xor"}, [(short, np.array([_bits(1.0)] * 3, np.uint64), None)]),
    ]


def write_block(parent: Path, *, as_xor2: bool, shift: int = 0) -> str:
    """The demo series as one block; ``as_xor2``: every chunk but those of case="xor" is XOR2."""
    w = BlockWriter(str(parent), min_time=T0 + shift, max_time=T0 + H2 + shift)
    for lab, chunks in _series():
        payloads, encs, mint, maxt, n = [], [], [], [], 0
        for t, v, sts in chunks:
            t = t + shift
            xor2 = as_xor2 and lab["case"] != "xor"
            sts = None if sts is None else [s + shift for s in sts]
            payloads.append(encode_xor2(t.tolist(), v.tolist(), sts) if xor2 else xor.encode(t, v))
            encs.append(ENC_XOR2 if xor2 else ENC_XOR)
            mint.append(int(t[0]))
            maxt.append(int(t[-1]))
            n += t.shape[0]
        offsets = np.cumsum([0, *map(len, payloads)])
        w.add_chunks(labelset.from_dict(lab), np.array(encs), np.frombuffer(b"".join(payloads), np.uint8), offsets,
                     np.array(mint), np.array(maxt), n)
    return w.finish().ulid


@pytest.fixture(scope="module")
def buckets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("xor2")
    ulid = write_block(root / "xor2", as_xor2=True)
    write_block(root / "xor", as_xor2=False)
    return root / "xor2", root / "xor", ulid


def _encodings(block: Block) -> set[int]:
    out: set[int] = set()
    for raw in block.index.iter_series_raw():
        out |= set(block.chunks.headers(raw.chunk_ref).encodings.tolist())
    return out


def _samples(block: Block) -> dict[str, tuple[list[int], list[int]]]:
    out = {}
    for batch in block.select():
        for i in range(len(batch)):
            a, b = int(batch.offsets[i]), int(batch.offsets[i + 1])
            out[labelset.format_labels(batch.labels[i])] = (batch.t[a:b].tolist(), batch.v[a:b].tolist())
    return out


def test_select_reads_xor2_like_xor(buckets: tuple[Path, Path, str]) -> None:
    xor2_dir, xor_dir, ulid = buckets
    block = Block.open_dir(str(xor2_dir / ulid))
    assert _encodings(block) == {ENC_XOR, ENC_XOR2}
    got = _samples(block)
    (ref_ulid,) = [p.name for p in xor_dir.iterdir()]
    assert got == _samples(Block.open_dir(str(xor_dir / ref_ulid)))
    t, v = got['xor2_demo{case="long"}']
    assert len(t) == 350 and STALE_NAN_BITS in v and NAN_BITS in v and _bits(float("-inf")) in v


def test_dump_verify_and_analyze(buckets: tuple[Path, Path, str]) -> None:
    xor2_dir, xor_dir, ulid = buckets
    dumped = run_cli("bucket", "dump", "--bucket", str(xor2_dir))
    assert dumped.exit_code == 0, dumped.stderr
    assert dumped.stdout == run_cli("bucket", "dump", "--bucket", str(xor_dir)).stdout
    assert 'case="long"' in dumped.stdout
    window = ("--start", str(T0), "--end", str(T0 + H2), "--step", "60", "-o", "json")
    for expr in ("xor2_demo", "sum_over_time(xor2_demo[10m])"):
        queried = run_cli("query", "--bucket", str(xor2_dir), expr, *window)
        assert queried.exit_code == 0, queried.stderr
        assert queried.stdout == run_cli("query", "--bucket", str(xor_dir), expr, *window).stdout
        assert '"values":[[' in queried.stdout
    verified = run_cli("bucket", "verify", "--bucket", str(xor2_dir), "--deep")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    analyzed = run_cli("bucket", "analyze", "--bucket", str(xor2_dir), "--id", ulid, "--extended", "-o", "json")
    assert analyzed.exit_code == 0, analyzed.stderr


def _compacted(blocks: list[Block], out: Path) -> Block:
    result = compact_blocks(blocks, str(out), external_labels={}, resolution=0)
    assert result.meta is not None
    return Block.open_dir(str(out / result.meta.ulid))


@pytest.mark.parametrize("shift", [H2, 1000], ids=["adjacent", "overlapping"])
def test_compaction_writes_xor(buckets: tuple[Path, Path, str], tmp_path: Path, shift: int) -> None:
    xor2_dir, xor_dir, ulid = buckets
    (xor_ulid,) = [p.name for p in xor_dir.iterdir()]
    other = write_block(tmp_path / "in", as_xor2=True, shift=shift)
    other_xor = write_block(tmp_path / "ref", as_xor2=False, shift=shift)
    out = _compacted([Block.open_dir(str(xor2_dir / ulid)), Block.open_dir(str(tmp_path / "in" / other))],
                     tmp_path / "out")
    assert _encodings(out) == {ENC_XOR}
    twin = _compacted([Block.open_dir(str(xor_dir / xor_ulid)), Block.open_dir(str(tmp_path / "ref" / other_xor))],
                      tmp_path / "out-ref")
    merged = _samples(out)
    assert merged == _samples(twin)
    assert len(merged['xor2_demo{case="long"}'][0]) == 700


def _damage(block_dir: Path, cut: bool) -> int:
    """Damage the first XOR2 chunk of the block (CRC recomputed, so only decoding notices) -> its record offset."""
    seg = block_dir / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    pos = 8
    while True:
        length, n = 0, 0
        while True:
            b = data[pos + n]
            length |= (b & 0x7F) << (7 * n)
            n += 1
            if b < 0x80:
                break
        if data[pos + n] == ENC_XOR2:
            break
        pos += n + 1 + length + 4
    payload = pos + n + 1
    if cut:  # a sample count far beyond what the bits hold
        data[payload : payload + 2] = b"\x7f\xff"
    else:  # t0's varint runs over 64 bits
        data[payload + 3 : payload + 13] = b"\xff" * 10
    crc = kb.crc32c(np.frombuffer(bytes(data), np.uint8), pos + n, payload + length)
    data[payload + length : payload + length + 4] = struct.pack(">I", crc)
    seg.write_bytes(bytes(data))
    return pos


@pytest.mark.parametrize("cut", [True, False])
def test_damaged_xor2_chunks_give_located_errors(buckets: tuple[Path, Path, str], tmp_path: Path, cut: bool) -> None:
    xor2_dir, _, ulid = buckets
    shutil.copytree(xor2_dir / ulid, tmp_path / "b" / ulid)
    offset = _damage(tmp_path / "b" / ulid, cut)
    with pytest.raises(CorruptBlockError) as info:
        _samples(Block.open_dir(str(tmp_path / "b" / ulid)))
    message = str(info.value)
    assert f"block {ulid}" in message and "file chunks/000001" in message and f"offset {offset}" in message
    assert "XOR2 chunk: " in message
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path / "b"))
    assert res.exit_code == 1 and f"offset {offset}" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path / "b"), "--deep", "-o", "json")
    assert res.exit_code == 3
    (issue,) = [i for i in res.json()["issues"] if i["id"] == "chunk_integrity"]
    assert issue["kind"] == "undecodable_chunk"
    (finding,) = issue["details"]["bad_chunks"]
    assert (finding["file"], finding["offset"]) == ("chunks/000001", offset)
    assert finding["reason"].startswith("XOR2 chunk does not decode: ")
    with pytest.raises(CorruptBlockError, match=f"offset {offset}"):
        compact_blocks([Block.open_dir(str(tmp_path / "b" / ulid))], str(tmp_path / "out"), external_labels={},
                       resolution=0)


def test_rewrite_writes_xor(buckets: tuple[Path, Path, str], tmp_path: Path) -> None:
    xor2_dir, _, ulid = buckets
    block = Block.open_dir(str(xor2_dir / ulid))
    res = rewrite_block(block, RewriteSpec(set_labels=(("cluster", "c1"),)), str(tmp_path))
    assert res.meta is not None
    out = Block.open_dir(str(tmp_path / res.meta.ulid))
    assert _encodings(out) == {ENC_XOR}
    assert _samples(out) == _samples(block)


def test_downsampling_reads_xor2(buckets: tuple[Path, Path, str], tmp_path: Path) -> None:
    xor2_dir, xor_dir, ulid = buckets
    (xor_ulid,) = [p.name for p in xor_dir.iterdir()]
    metas = [downsample_block(Block.open_dir(str(d / u)), RESOLUTION_5M, str(tmp_path / d.name))
             for d, u in ((xor2_dir, ulid), (xor_dir, xor_ulid))]
    blocks = [Block.open_dir(str(tmp_path / d / m.ulid)) for d, m in zip(("xor2", "xor"), metas, strict=True)]
    for aggregate in (Aggr.COUNT, Aggr.SUM, Aggr.MIN, Aggr.MAX, Aggr.COUNTER):
        got, want = ([(b.labels, b.t.tolist(), b.v.tolist()) for b in block.select(aggregate=aggregate)]
                     for block in blocks)
        assert got == want and got
