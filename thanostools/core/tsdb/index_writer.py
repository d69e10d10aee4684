"""Index v2 writer (FORMATS.md §2.9): symbols, 16-aligned series, postings, postings table, TOC."""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.kernels import binary as kb
from thanostools.core.labels import Labels
from thanostools.core.tsdb.index import INDEX_MAGIC
from thanostools.core.tsdb.labelkeys import LabelKeys
from thanostools.core.varint import encode_uvarint


@dataclass(frozen=True)
class IndexStats:
    series_max_size: int
    num_series: int
    num_postings_keys: int


class IndexBuilder:
    """Collects series (in order) as compact arrays; ``write`` lays out the whole index.

    Memory: the symbol table, 8 bytes per label pair and 24 bytes per chunk — never sample data.
    """

    def __init__(self) -> None:
        self._symbol_ids: dict[str, int] = {}
        self._fixed_symbols: list[str] | None = None  # when series come as LabelKeys over this table
        self._names = array("q")
        self._values = array("q")
        self._label_offsets = array("q", [0])
        self._chunk_offsets = array("q", [0])
        self._mint = array("q")
        self._maxt = array("q")
        self._ref = array("q")

    def add(self, labels: Labels, mint: np.ndarray, maxt: np.ndarray, refs: np.ndarray) -> None:
        for name, value in labels:
            self._names.append(self._sym(name))
            self._values.append(self._sym(value))
        self._label_offsets.append(len(self._names))
        self._mint.extend(mint.tolist())
        self._maxt.extend(maxt.tolist())
        self._ref.extend(refs.tolist())
        self._chunk_offsets.append(len(self._ref))

    def _sym(self, s: str) -> int:
        sid = self._symbol_ids.get(s)
        if sid is None:
            if self._fixed_symbols is not None:
                raise ValueError("series given as label strings and as label keys in one index")
            sid = self._symbol_ids[s] = len(self._symbol_ids)
        return sid

    def add_batch(self, labels: Sequence[Labels], mint: np.ndarray, maxt: np.ndarray, refs: np.ndarray,
                  series_chunks: Sequence[int]) -> None:
        """Add several series at once: series i owns chunks ``series_chunks[i]:series_chunks[i+1]``."""
        sym = self._sym
        names, values, label_offsets = self._names, self._values, self._label_offsets
        for lab in labels:
            for name, value in lab:
                names.append(sym(name))
                values.append(sym(value))
            label_offsets.append(len(names))
        self._add_chunks(mint, maxt, refs, series_chunks)

    def add_keys(self, labels: LabelKeys, mint: np.ndarray, maxt: np.ndarray, refs: np.ndarray,
                 series_chunks: np.ndarray) -> None:
        """``add_batch`` for label sets given as keys; every call must use the same symbol table."""
        if self._symbol_ids or (self._fixed_symbols is not None and labels.symbols is not self._fixed_symbols):
            raise ValueError("series given over different symbol tables in one index")
        self._fixed_symbols = labels.symbols
        base = len(self._names)
        self._names.frombytes(np.ascontiguousarray(labels.keys[0::2]).tobytes())
        self._values.frombytes(np.ascontiguousarray(labels.keys[1::2]).tobytes())
        self._label_offsets.frombytes((labels.offsets[1:] // 2 + base).astype(np.int64).tobytes())
        self._add_chunks(mint, maxt, refs, series_chunks)

    def _add_chunks(self, mint: np.ndarray, maxt: np.ndarray, refs: np.ndarray,
                    series_chunks: Sequence[int] | np.ndarray) -> None:
        base = len(self._ref)
        self._mint.frombytes(np.ascontiguousarray(mint, dtype=np.int64).tobytes())
        self._maxt.frombytes(np.ascontiguousarray(maxt, dtype=np.int64).tobytes())
        self._ref.frombytes(np.ascontiguousarray(refs, dtype=np.int64).tobytes())
        self._chunk_offsets.frombytes((np.asarray(series_chunks[1:], dtype=np.int64) + base).tobytes())

    @property
    def num_series(self) -> int:
        return len(self._label_offsets) - 1

    def _symbols_and_remap(self) -> tuple[list[str], np.ndarray]:
        """The sorted symbols the index needs, and for every symbol id added its position among them."""
        if self._fixed_symbols is not None:
            used = np.unique(np.concatenate([_arr(self._names), _arr(self._values)]))
            remap = np.full(len(self._fixed_symbols), -1, dtype=np.int64)
            remap[used] = np.arange(used.shape[0])
            return [self._fixed_symbols[i] for i in used.tolist()], remap
        symbols = sorted(self._symbol_ids)
        remap = np.empty(len(symbols), dtype=np.int64)
        for pos, s in enumerate(symbols):
            remap[self._symbol_ids[s]] = pos
        return symbols, remap

    def write(self, path: str) -> IndexStats:
        symbols, remap = self._symbols_and_remap()
        names = remap[_arr(self._names)]
        values = remap[_arr(self._values)]
        label_offsets = np.frombuffer(self._label_offsets, np.int64)
        with open(path, "wb") as fh:
            fh.write(struct.pack(">IB", INDEX_MAGIC, 2))
            toc_symbols = 5
            sym_bytes = _symbol_table(symbols)
            fh.write(sym_bytes)
            toc_series = toc_symbols + len(sym_bytes)
            series_bytes, entry_offsets = kb.encode_series_entries(
                toc_series, label_offsets, names, values,
                np.frombuffer(self._chunk_offsets, np.int64), _arr(self._mint), _arr(self._maxt), _arr(self._ref),
            )
            fh.write(series_bytes.data)
            toc_label_indices = toc_series + series_bytes.shape[0]
            pad = (4 - toc_label_indices % 4) % 4
            fh.write(b"\0" * pad)
            toc_postings = toc_label_indices + pad
            ids = entry_offsets // 16
            keys, post_bytes, post_offsets = _postings(symbols, names, values, label_offsets, ids, toc_postings)
            fh.write(post_bytes.data)
            toc_postings_table = toc_postings + post_bytes.shape[0]
            fh.write(_postings_table(keys, post_offsets))
            toc = struct.pack(">6Q", toc_symbols, toc_series, toc_label_indices, toc_postings_table,
                              toc_postings, toc_postings_table)
            fh.write(toc + struct.pack(">I", kb.crc32c(np.frombuffer(toc, np.uint8), 0, 48)))
        sizes = np.diff(np.append(entry_offsets, toc_label_indices))
        return IndexStats(int(sizes.max()) if sizes.size else 0, len(ids), len(keys))


def _arr(a: array[int]) -> np.ndarray:
    return np.frombuffer(a, np.int64) if len(a) else np.zeros(0, np.int64)


def _table(body: bytes) -> bytes:
    crc = kb.crc32c(np.frombuffer(body, np.uint8), 0, len(body))
    return struct.pack(">I", len(body)) + body + struct.pack(">I", crc)


def _symbol_table(symbols: list[str]) -> bytes:
    parts = [struct.pack(">I", len(symbols))]
    for s in symbols:
        b = s.encode()
        parts.append(encode_uvarint(len(b)))
        parts.append(b)
    return _table(b"".join(parts))


def _postings(
    symbols: list[str], names: np.ndarray, values: np.ndarray, label_offsets: np.ndarray, ids: np.ndarray,
    base_offset: int,
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """Postings lists in table order (``("","")`` first), encoded back to back."""
    series_of_pair = np.repeat(np.arange(ids.shape[0]), np.diff(label_offsets))
    order = np.lexsort((series_of_pair, values, names))
    n_sorted, v_sorted, s_sorted = names[order], values[order], ids[series_of_pair[order]]
    if n_sorted.size:
        change = np.flatnonzero((np.diff(n_sorted) != 0) | (np.diff(v_sorted) != 0)) + 1
        group_starts = np.concatenate([[0], change])
    else:
        group_starts = np.zeros(0, np.int64)
    keys = [("", "")] + [(symbols[n], symbols[v]) for n, v in
                         zip(n_sorted[group_starts].tolist(), v_sorted[group_starts].tolist(), strict=True)]
    refs = np.concatenate([ids, s_sorted]).astype(np.int64)
    list_offsets = np.concatenate([[0], ids.shape[0] + group_starts, [refs.shape[0]]]).astype(np.int64)
    data, starts = kb.encode_postings_lists(list_offsets, refs)
    return keys, data, starts + base_offset


def _postings_table(keys: list[tuple[str, str]], offsets: np.ndarray) -> bytes:
    parts = [struct.pack(">I", len(keys))]
    for (name, value), off in zip(keys, offsets.tolist(), strict=True):
        nb, vb = name.encode(), value.encode()
        parts.append(b"\x02" + encode_uvarint(len(nb)) + nb + encode_uvarint(len(vb)) + vb + encode_uvarint(off))
    return _table(b"".join(parts))
