"""The index's binary kernels: varints at the 64-bit edges, series entries with negative deltas (out-of-order and
overlapping chunks), integrity walks. Also run without numba (test_kernels_without_numba.py): results must agree."""

from __future__ import annotations

import numpy as np
import pytest

from thanostools.core.kernels import binary as kb
from thanostools.core.tsdb.index_writer import _symbol_table

EDGES = [0, 1, 127, 128, (1 << 31) - 1, 1 << 32, (1 << 63) - 1, -1, -(1 << 63), -128, -129]


def _put(kernel: object, value: int) -> bytes:
    out = np.zeros(16, np.uint8)
    n = kernel(out, 0, value)  # type: ignore[operator]
    return out[:n].tobytes()


@pytest.mark.parametrize("value", EDGES)
def test_varint_round_trip(value: int) -> None:
    data = np.frombuffer(_put(kb.put_varint, value), np.uint8)
    assert kb.varint(data, 0, data.shape[0]) == (value, data.shape[0])


@pytest.mark.parametrize("value", EDGES)
def test_uvarint_holds_64_bits_as_a_signed_int64(value: int) -> None:
    data = np.frombuffer(_put(kb.put_uvarint, value), np.uint8)
    assert data.shape[0] == kb.uvarint_len(value) == (10 if value < 0 else data.shape[0])
    assert kb.uvarint(data, 0, data.shape[0]) == (value, data.shape[0])


def test_uvarint_rejects_overlong_and_truncated() -> None:
    assert kb.uvarint(np.array([0x80] * 10 + [1], np.uint8), 0, 11)[1] == -1
    assert kb.uvarint(np.array([0xFF] * 9 + [2], np.uint8), 0, 10)[1] == -1
    assert kb.uvarint(np.array([0x80, 0x80], np.uint8), 0, 2)[1] == -1


def _entries(mint: list[int], maxt: list[int], refs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    k = len(mint)
    data, offsets = kb.encode_series_entries(
        0, np.array([0, 1]), np.array([0]), np.array([1]), np.array([0, k]), np.array(mint, np.int64),
        np.array(maxt, np.int64), np.array(refs, np.int64))
    return data, offsets


@pytest.mark.parametrize("mint,maxt,refs", [
    ([0, 50], [100, 150], [8, 40]),  # overlapping
    ([100, 0], [200, 50], [40, 8]),  # out of order, refs going back
    ([-(1 << 62), 1 << 62], [1 << 62, (1 << 63) - 1], [8, (0x8000_0001 << 32) - (1 << 64)]),
])
def test_series_entries_with_negative_deltas_round_trip(mint: list[int], maxt: list[int], refs: list[int]) -> None:
    data, offsets = _entries(mint, maxt, refs)
    _lab_off, names, values, _chk_off, cmint, cmaxt, cref, ends, bad = kb.decode_series_entries(data, offsets, True)
    assert bad == -1
    assert (cmint.tolist(), cmaxt.tolist(), cref.tolist()) == (mint, maxt, refs)
    assert ends.tolist() == [data.shape[0]] and names.tolist() == [0] and values.tolist() == [1]


def test_series_entry_with_a_huge_length_or_count_is_bad() -> None:
    data, offsets = _entries([0], [10], [8])
    for at, byte in ((0, 0xFF), (1, 0xFF)):
        bad_data = data.copy()
        bad_data[at] = byte
        assert kb.decode_series_entries(bad_data, offsets, False)[-1] == 0
    huge = np.array([0xFF] * 9 + [1, 0, 0, 0, 0], np.uint8)  # a length of 2^64-1
    assert kb.decode_series_entries(huge, np.array([0]), False)[-1] == 0


def test_integrity_walks() -> None:
    table = np.frombuffer(_symbol_table(["a", "b"]) * 2, np.uint8).copy()
    size = table.shape[0] // 2
    assert kb.check_table_sections(table, np.array([0, size]), table.shape[0]).tolist() == [0, 0]
    table[size + 6] ^= 1
    assert kb.check_table_sections(table, np.array([0, size, size + 3, -1]), table.shape[0]).tolist() == [
        kb.SECTION_OK, kb.SECTION_CRC_MISMATCH, kb.SECTION_TRUNCATED, kb.SECTION_TRUNCATED]
    data, _ = _entries([0, 50], [100, 150], [8, 40])
    section = np.concatenate([np.zeros(3, np.uint8), data, np.zeros(16 - data.shape[0] % 16, np.uint8), data])
    starts, stuck = kb.walk_series_entries(section, 13, 16)
    assert (starts.tolist(), stuck) == ([3, 3 + 16 * ((data.shape[0] + 15) // 16)], -1)
    section[starts[1] + 2] ^= 1
    assert kb.check_series_entry_crcs(section, starts).tolist() == [kb.SECTION_OK, kb.SECTION_CRC_MISMATCH]
    assert kb.walk_series_entries(section, 12, 16)[1] == 3  # misaligned


def test_chunk_records_with_a_huge_length_are_truncated() -> None:
    seg = np.array([0] * 8 + [0xFF] * 9 + [1, 1, 0, 0, 0, 0], np.uint8)
    assert kb.locate_chunk_records(seg, np.array([8]), True)[3:] == (0, 1)
    assert kb.chunk_record_headers(seg, np.array([8]))[3] == 0


@pytest.mark.parametrize(("encoding", "header", "samples"), [
    (1, [0x01, 0x2C], 300),  # XOR: be16 count
    (2, [0x00, 0x78, 0x80], 120),  # histogram: be16 count, reset header in the third byte
    (5, [0xC0 | 0x01, 0x2C, 0x00], 300),  # histogram ST: the top two bits are the reset header (H11.2)
    (6, [0x80, 0x07, 0x00], 7),
])
def test_chunk_record_headers_read_each_encodings_sample_count(encoding: int, header: list[int], samples: int) -> None:
    payload = header + [0] * 5
    seg = np.array([len(payload), encoding, *payload, 0, 0, 0, 0], np.uint8)
    encs, lens, counts, bad = kb.chunk_record_headers(seg, np.array([0]))
    assert (int(encs[0]), int(lens[0]), int(counts[0]), bad) == (encoding, len(payload), samples, -1)
