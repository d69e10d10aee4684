"""Mutated index, chunk segment and tombstones bytes: every reader either reads them or raises a located
CorruptBlockError / FormatError — never another exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thanostools.core.errors import CorruptBlockError, FormatError, UnsupportedError
from thanostools.core.tsdb.bytesource import MemorySource
from thanostools.core.tsdb.chunks import ChunkReader
from thanostools.core.tsdb.index import IndexReader
from thanostools.core.tsdb.tombstones import encode_tombstones, parse_tombstones
from thanostools.core.tsdb.writer import BlockWriter

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def block_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    root = tmp_path_factory.mktemp("fuzz")
    w = BlockWriter(str(root))
    t = np.arange(0, 600_000, 15_000, dtype=np.int64)
    for i in range(6):
        w.add_samples((("__name__", "m"), ("i", str(i)), ("j", "x" * i)), t, t * 0.5 + i)
    ulid = w.finish().ulid
    return (root / ulid / "index").read_bytes(), (root / ulid / "chunks" / "000001").read_bytes()


Edits = list[tuple[int, int]]
edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1, max_size=4)


def mutate(data: bytes, changes: Edits, cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, xor in changes:
        out[pos % len(out)] ^= xor
    return bytes(out[:cut] if cut is not None else out)


def located(exc: FormatError | UnsupportedError, file: str) -> None:
    if isinstance(exc, CorruptBlockError):
        assert exc.file == file and exc.block == "B", exc
    assert "\n" not in str(exc)


def read_whole_index(data: bytes) -> None:
    reader = IndexReader(MemorySource(data, "index"), block="B")
    for batch in reader.iter_series():
        assert len(batch.labels) == len(batch)
    reader.postings_for_matchers([])
    for name in reader.label_names():
        for value in reader.label_values(name):
            reader.postings(name, value)
    reader.checksum_problems()


@FUZZ
@given(changes=edits, cut=st.none() | st.integers(0, 4000))
def test_mutated_index(block_files: tuple[bytes, bytes], changes: Edits, cut: int | None) -> None:
    try:
        read_whole_index(mutate(block_files[0], changes, cut))
    except (FormatError, UnsupportedError) as exc:
        located(exc, "index")


@FUZZ
@given(changes=edits, cut=st.none() | st.integers(0, 4000))
def test_mutated_segment(block_files: tuple[bytes, bytes], changes: Edits, cut: int | None) -> None:
    index = IndexReader(MemorySource(block_files[0], "index"), block="B")
    refs = index.series_raw(index.all_postings()).chunk_ref
    reader = ChunkReader([MemorySource(mutate(block_files[1], changes, cut), "chunks/000001")], block="B")
    try:
        reader.check_headers()
        reader.read(refs)
        reader.headers(refs)
    except (FormatError, UnsupportedError) as exc:
        located(exc, "chunks/000001")


STONES = encode_tombstones({1: [(0, 10), (20, 30)], 5: [(-(1 << 62), 1 << 62)], 1 << 40: [(7, 7)]})


@FUZZ
@given(changes=edits, cut=st.none() | st.integers(0, len(STONES)))
def test_mutated_tombstones(changes: Edits, cut: int | None) -> None:
    try:
        stones = parse_tombstones(mutate(STONES, changes, cut), block="B")
    except FormatError as exc:
        located(exc, "tombstones")
        return
    assert all(isinstance(ref, int) and iv == sorted(iv) for ref, iv in stones.items())


def test_fuzz_inputs_are_valid_unmutated(block_files: tuple[bytes, bytes], tmp_path: Path) -> None:
    read_whole_index(block_files[0])
    assert IndexReader(MemorySource(block_files[0], "index")).checksum_problems()[1] == []
    assert parse_tombstones(STONES)[5] == [(-(1 << 62), 1 << 62)]
