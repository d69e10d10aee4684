"""Index reader for format v2 (and v1): TOC, symbols, postings, series entries (FORMATS.md §2)."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from itertools import pairwise
from operator import itemgetter

import numpy as np
from numpy.typing import NDArray

from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.kernels import binary as kb
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.tsdb.bytesource import ByteSource, located_source

INDEX_MAGIC = 0xBAAAD700
TOC_LEN = 52
ALL_POSTINGS_KEY = ("", "")


@dataclass(frozen=True)
class TOC:
    symbols: int
    series: int
    label_indices: int
    label_indices_table: int
    postings: int
    postings_table: int


@dataclass(frozen=True)
class RawSeries:
    """Series entries as arrays: label pairs as symbol positions, chunk metas flattened."""

    refs: np.ndarray
    label_offsets: np.ndarray
    label_names: np.ndarray
    label_values: np.ndarray
    chunk_offsets: np.ndarray
    chunk_mint: np.ndarray
    chunk_maxt: np.ndarray
    chunk_ref: np.ndarray
    entry_sizes: np.ndarray

    def __len__(self) -> int:
        return int(self.refs.shape[0])

    def num_chunks(self, i: int) -> int:
        return int(self.chunk_offsets[i + 1] - self.chunk_offsets[i])

    def chunks_in_range(self, mint: int, maxt: int) -> NDArray[np.bool_]:
        """Per chunk: whether it overlaps the closed range ``[mint, maxt]``."""
        return (self.chunk_maxt >= mint) & (self.chunk_mint <= maxt)

    def rows_in_range(self, mint: int, maxt: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The series (rows) with a chunk overlapping ``[mint, maxt]``, and their numbers of such chunks."""
        live = np.concatenate([[0], np.cumsum(self.chunks_in_range(mint, maxt))])
        per_row = live[self.chunk_offsets[1:]] - live[self.chunk_offsets[:-1]]
        rows = np.flatnonzero(per_row)
        return rows, per_row[rows]


@dataclass(frozen=True)
class SeriesBatch(RawSeries):
    """Decoded series entries with their label sets built: chunks of series i are
    ``chunk_*[chunk_offsets[i]:chunk_offsets[i+1]]``."""

    labels: list[Labels] = field(default_factory=list)


class _LabelPairs(dict[int, tuple[str, str]]):
    """Label pairs by ``name position * len(symbols) + value position``, each built once per index: label sets
    share them, so reading series allocates one tuple per series rather than one per label too."""

    def __init__(self, symbols: list[str]) -> None:
        super().__init__()
        self.symbols = symbols

    def __missing__(self, key: int) -> tuple[str, str]:
        name, value = divmod(key, len(self.symbols))
        pair = self[key] = (self.symbols[name], self.symbols[value])
        return pair


def _as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


class IndexReader:
    """Reads one index file through a ByteSource; symbols and the postings table are loaded at open."""

    def __init__(self, source: ByteSource, *, block: str | None = None) -> None:
        self.source = source = located_source(source, block)
        self.block = block
        size = source.size()
        if size < 5 + TOC_LEN:
            raise self._corrupt(f"index too small ({size} bytes)", 0)
        head, toc_bytes = source.read_ranges([(0, 5), (size - TOC_LEN, TOC_LEN)])
        magic, self.version = struct.unpack(">IB", head)
        if magic != INDEX_MAGIC:
            raise self._corrupt(f"bad index magic 0x{magic:08x}", 0)
        if self.version not in (1, 2):
            raise UnsupportedError(
                f"block {block}: index format version {self.version} is not supported (only 1 and 2)"
            )
        self.toc = self._parse_toc(toc_bytes, size)
        self._load_symbols()
        self._pairs = _LabelPairs(self.symbols)
        self._load_postings_table()

    # --- opening ---------------------------------------------------------------------------------

    def _corrupt(self, msg: str, offset: int | None) -> CorruptBlockError:
        return CorruptBlockError(msg, block=self.block, file="index", offset=offset)

    def _parse_toc(self, data: bytes, size: int) -> TOC:
        fields = struct.unpack(">6Q", data[:48])
        (crc,) = struct.unpack(">I", data[48:])
        if kb.crc32c(_as_array(data), 0, 48) != crc:
            raise self._corrupt("TOC checksum mismatch", size - TOC_LEN)
        toc = TOC(*fields)
        for off in fields:
            if off > size - TOC_LEN:
                raise self._corrupt(f"TOC offset {off} beyond the end of the index", size - TOC_LEN)
        return toc

    def _read_table(self, offset: int, what: str) -> np.ndarray:
        """Read a ``len be32 ‖ body ‖ crc be32`` section and return the CRC-checked body."""
        if offset + 4 > self.source.size():
            raise self._corrupt(f"{what} offset out of range", offset)
        (length,) = struct.unpack(">I", self.source.read(offset, 4))
        if offset + 8 + length > self.source.size():
            raise self._corrupt(f"{what} length {length} runs past the end of the index", offset)
        data = self.source.read(offset + 4, length + 4)
        body = _as_array(data)
        (crc,) = struct.unpack(">I", data[length:])
        if kb.crc32c(body, 0, length) != crc:
            raise self._corrupt(f"{what} checksum mismatch", offset)
        return body[:length]

    def _load_symbols(self) -> None:
        body = self._read_table(self.toc.symbols, "symbol table")
        if body.shape[0] < 4:
            raise self._corrupt("symbol table too short", self.toc.symbols)
        count = int(kb.be32(body, 0))
        starts, ends, status = kb.scan_uvarint_strings(body, 4, body.shape[0], count)
        if status < 0:
            raise self._corrupt("symbol table truncated", self.toc.symbols)
        raw = body.tobytes()
        self.symbols: list[str] = [raw[s:e].decode("utf-8", "replace") for s, e in zip(starts.tolist(), ends.tolist(),
                                                                                           strict=True)]
        if self.version == 1:
            # v1 references a symbol by the absolute file offset of its entry (its uvarint length).
            entry_starts = [4, *ends.tolist()[:-1]]
            base = self.toc.symbols + 4
            self._symbol_by_offset = {base + s: sym for s, sym in zip(entry_starts, self.symbols, strict=True)}
            self._v1_symbol_offsets = np.array([base + s for s in entry_starts], dtype=np.int64)

    def _load_postings_table(self) -> None:
        body = self._read_table(self.toc.postings_table, "postings offset table")
        if body.shape[0] < 4:
            raise self._corrupt("postings offset table too short", self.toc.postings_table)
        count = int(kb.be32(body, 0))
        ns, ne, vs, ve, offs, status = kb.scan_postings_table(body, 4, body.shape[0], count)
        if status < 0:
            raise self._corrupt("postings offset table malformed", self.toc.postings_table)
        raw = body.tobytes()
        table: dict[str, dict[str, int]] = {}
        for a, b, c, d, off in zip(ns.tolist(), ne.tolist(), vs.tolist(), ve.tolist(), offs.tolist(), strict=True):
            name = raw[a:b].decode("utf-8", "replace")
            value = raw[c:d].decode("utf-8", "replace")
            table.setdefault(name, {})[value] = off
        self._postings_table = table
        self._postings_order = sorted(offs.tolist())

    # --- symbols, names, values ------------------------------------------------------------------

    def symbol(self, ref: int) -> str:
        try:
            return self.symbols[ref] if self.version == 2 else self._symbol_by_offset[ref]
        except (IndexError, KeyError):
            raise self._corrupt(f"unknown symbol reference {ref}", None) from None

    def label_names(self) -> list[str]:
        return sorted(n for n in self._postings_table if n != "")

    def label_values(self, name: str) -> list[str]:
        return sorted(self._postings_table.get(name, {}))

    def postings_keys(self) -> list[tuple[str, str]]:
        return sorted((n, v) for n, vals in self._postings_table.items() for v in vals)

    # --- postings --------------------------------------------------------------------------------

    def postings(self, name: str, value: str) -> np.ndarray:
        """Series refs for one label pair, sorted (empty when the pair does not exist)."""
        off = self._postings_table.get(name, {}).get(value)
        if off is None:
            return np.zeros(0, dtype=np.int64)
        return self._read_postings_list(off)

    def postings_many(self, keys: Sequence[tuple[str, str]]) -> list[np.ndarray]:
        offsets = [self._postings_table.get(n, {}).get(v) for n, v in keys]
        present = [o for o in offsets if o is not None]
        lists = dict(zip(present, self._read_postings_lists(present), strict=True))
        return [lists[o] if o is not None else np.zeros(0, np.int64) for o in offsets]

    def all_postings(self) -> np.ndarray:
        """Every series, in index order. An index without the ``""=""`` list has none (as Prometheus reads it)."""
        return self.postings(*ALL_POSTINGS_KEY)

    def _read_postings_list(self, offset: int) -> np.ndarray:
        return self._read_postings_lists([offset])[0]

    def _read_postings_lists(self, offsets: Sequence[int]) -> list[np.ndarray]:
        if not offsets:
            return []
        # Lists are contiguous in table order: a list's extent ends at the next list's offset.
        bounds = []
        for off in offsets:
            i = int(np.searchsorted(self._postings_order, off, side="right"))
            nxt = self._postings_order[i] if i < len(self._postings_order) else self.toc.postings_table
            bounds.append((off, max(nxt - off, 8)))
        for off, n in bounds:
            if off + n > self.source.size():
                raise self._corrupt("postings list out of range", off)
        datas = self.source.read_ranges(bounds)
        return [self._decode_postings(off, data) for (off, _), data in zip(bounds, datas, strict=True)]

    def _decode_postings(self, offset: int, data: bytes) -> np.ndarray:
        (length,) = struct.unpack(">I", data[:4])
        if len(data) < 8 + length:
            data = self.source.read(offset, 8 + length)
        arr = _as_array(data)
        (crc,) = struct.unpack(">I", data[4 + length : 8 + length])
        if kb.crc32c(arr, 4, 4 + length) != crc:
            raise self._corrupt("postings list checksum mismatch", offset)
        (count,) = struct.unpack(">I", data[4:8])
        if 4 + 4 * count != length:
            raise self._corrupt("postings list length mismatch", offset)
        return np.frombuffer(data, dtype=">u4", count=count, offset=8).astype(np.int64)

    def postings_for_matchers(self, matchers: Sequence[Matcher]) -> np.ndarray:
        """Sorted series refs whose labels satisfy every matcher (absent label == empty value)."""
        result: np.ndarray | None = None
        subtract: list[np.ndarray] = []
        for m in matchers:
            values = self.label_values(m.name)
            if m.matches_empty:
                # Matches series lacking the label too: all series except those with a non-matching value.
                bad = [(m.name, v) for v in values if not m.matches(v)]
                if bad:
                    subtract.append(_union(self.postings_many(bad)))
                continue
            good = [(m.name, v) for v in values if m.matches(v)]
            lst = _union(self.postings_many(good)) if good else np.zeros(0, np.int64)
            result = lst if result is None else np.intersect1d(result, lst, assume_unique=True)
            if result.size == 0:
                return result
        if result is None:
            result = self.all_postings()
        for s in subtract:
            result = np.setdiff1d(result, s, assume_unique=True)
        return result

    # --- series ----------------------------------------------------------------------------------

    def series_offsets(self, refs: np.ndarray) -> np.ndarray:
        return refs * 16 if self.version == 2 else refs.copy()

    def series_raw(self, refs: np.ndarray, *, check_crc: bool = True) -> RawSeries:
        """Decode series entries for ``refs`` (in the given order) without building label strings."""
        refs = np.asarray(refs, dtype=np.int64)
        offsets = self.series_offsets(refs)
        buf, rel = self._series_bytes(offsets)
        (lab_off, names, values, chk_off, mint, maxt, cref, ends, bad) = kb.decode_series_entries(buf, rel, check_crc)
        if bad >= 0:
            raise self._corrupt("series entry truncated or checksum mismatch", int(offsets[bad]))
        names, values = self._symbol_positions(names), self._symbol_positions(values)
        return RawSeries(refs, lab_off, names, values, chk_off, mint, maxt, cref, ends - rel)

    def _symbol_positions(self, refs: np.ndarray) -> np.ndarray:
        """Symbol references as positions in ``symbols`` (v1 stores file offsets instead)."""
        if self.version == 2:
            if refs.size and int(refs.max()) >= len(self.symbols):
                raise self._corrupt("series entry references an unknown symbol", None)
            return refs
        pos = np.searchsorted(self._v1_symbol_offsets, refs)
        ok = pos < len(self.symbols)
        if refs.size and (not bool(ok.all()) or not np.array_equal(self._v1_symbol_offsets[pos], refs)):
            raise self._corrupt("series entry references an unknown symbol", None)
        return pos

    def series(self, refs: np.ndarray, *, check_crc: bool = True) -> SeriesBatch:
        """Decode the series entries for ``refs`` (sorted or not), in the given order."""
        raw = self.series_raw(refs, check_crc=check_crc)
        return SeriesBatch(**{f.name: getattr(raw, f.name) for f in fields(RawSeries)}, labels=self.labels_of(raw))

    def labels_of(self, raw: RawSeries) -> list[Labels]:
        """The label sets of ``raw``'s series, built from pairs shared by every series of this index."""
        keys = raw.label_names * len(self.symbols) + raw.label_values
        if keys.shape[0] == 0:
            return [() for _ in range(len(raw))]
        found = itemgetter(*keys.tolist())(self._pairs)
        pairs: tuple[tuple[str, str], ...] = found if keys.shape[0] > 1 else (found,)
        return [pairs[a:b] for a, b in pairwise(raw.label_offsets.tolist())]

    def _series_bytes(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A buffer holding the requested entries, and each entry's offset inside it."""
        whole = self.source.array()
        if whole is not None:
            return whole, offsets
        if offsets.size == 0:
            return np.zeros(0, np.uint8), offsets
        end_of_series = self.toc.label_indices or self.toc.postings or self.toc.postings_table
        lo, hi = int(offsets.min()), int(offsets.max())
        span = end_of_series - lo
        # Dense requests: one read of the whole span beats many small ones.
        if offsets.size * 512 >= span:
            data = self.source.read(lo, min(end_of_series, self.source.size() - TOC_LEN) - lo)
            return _as_array(data), offsets - lo
        return self._sparse_series_bytes(offsets, end_of_series, hi)

    def _sparse_series_bytes(self, offsets: np.ndarray, end_of_series: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        guess = 4096
        order = np.argsort(offsets, kind="stable")
        sorted_offs = offsets[order]
        ranges: list[tuple[int, int]] = []
        for off in sorted_offs.tolist():
            end = min(off + guess, end_of_series)
            if ranges and off <= ranges[-1][1] + 1024:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
            else:
                ranges.append((off, end))
        datas = self.source.read_ranges([(a, b - a) for a, b in ranges])
        buf = np.concatenate([_as_array(d) for d in datas])
        starts = np.array([a for a, _ in ranges], dtype=np.int64)
        bases = np.cumsum([0] + [len(d) for d in datas[:-1]])
        which = np.searchsorted(starts, offsets, side="right") - 1
        rel = offsets - starts[which] + bases[which]
        _lo, _ln, _lv, _co, _mi, _ma, _cr, ends, bad = kb.decode_series_entries(buf, rel, False)
        seg_ends = (bases + np.array([len(d) for d in datas]))[which]
        if bad >= 0 or (ends.size and bool((ends > seg_ends).any())):
            # Some entry was larger than the guess: fall back to reading the whole span.
            lo = int(offsets.min())
            data = self.source.read(lo, end_of_series - lo)
            return _as_array(data), offsets - lo
        del hi
        return buf, rel

    # --- integrity -------------------------------------------------------------------------------

    def checksum_problems(self, limit: int = 20) -> tuple[int, list[CorruptBlockError]]:
        """Check every CRC of the index: (sections checked, up to ``limit`` problems, each with its offset).

        The TOC, symbol table and postings offset table were checked when the reader opened; here come every
        series entry (walking the whole series section, not only what the postings reach), every postings
        list, and the legacy label indices and label offset table where present.
        """
        checked, problems = 3, list[CorruptBlockError]()
        for check in (self._series_crc_problems, self._postings_crc_problems, self._label_index_crc_problems):
            n, found = check(limit - len(problems))
            checked += n
            problems += found
        return checked, problems[:limit]

    def _section_bytes(self, start: int, end: int) -> np.ndarray:
        whole = self.source.array()
        if whole is not None:
            return whole[start:end]
        return _as_array(self.source.read(start, end - start)) if end > start else np.zeros(0, np.uint8)

    def _series_section_end(self) -> int:
        toc = self.toc
        return next(o for o in (toc.label_indices, toc.postings, toc.postings_table) if o)

    def _series_crc_problems(self, limit: int) -> tuple[int, list[CorruptBlockError]]:
        start, end = self.toc.series, self._series_section_end()
        if end < start:
            return 0, [self._corrupt(f"series section ends (at {end}) before it starts", start)]
        buf = self._section_bytes(start, end)
        starts, stuck = kb.walk_series_entries(buf, start, 16 if self.version == 2 else 1)
        status = kb.check_series_entry_crcs(buf, starts)
        problems = [self._corrupt("series entry checksum mismatch", start + int(off))
                    for off in starts[status != kb.SECTION_OK][:limit].tolist()]
        if stuck >= 0:
            problems.append(self._corrupt("series section holds bytes that are no valid series entry", start + stuck))
        return int(starts.shape[0]), problems

    def _table_problems(self, offsets: list[int], end: int, what: str, limit: int) -> list[CorruptBlockError]:
        """Problems of ``len ‖ body ‖ crc`` sections at ``offsets``, all inside ``[min(offsets), end)``."""
        if not offsets:
            return []
        lo = max(0, min(offsets))
        buf = self._section_bytes(lo, min(max(end, lo), self.source.size()))
        status = kb.check_table_sections(buf, np.array(offsets, np.int64) - lo, buf.shape[0])
        bad = np.flatnonzero(status != kb.SECTION_OK)[:limit].tolist()
        reasons = {kb.SECTION_TRUNCATED: "runs past its section", kb.SECTION_CRC_MISMATCH: "checksum mismatch"}
        return [self._corrupt(f"{what} {reasons[int(status[i])]}", offsets[i]) for i in bad]

    def _postings_crc_problems(self, limit: int) -> tuple[int, list[CorruptBlockError]]:
        offsets = self._postings_order
        return len(offsets), self._table_problems(offsets, self.toc.postings_table, "postings list", limit)

    def _label_index_crc_problems(self, limit: int) -> tuple[int, list[CorruptBlockError]]:
        toc = self.toc
        if not toc.label_indices_table or toc.label_indices_table == toc.postings_table:
            return 0, []  # no legacy label indices (FORMATS.md §2.5)
        try:
            body = self._read_table(toc.label_indices_table, "label offset table")
        except CorruptBlockError as exc:
            return 1, [exc]
        offsets = _label_index_offsets(body)
        if offsets is None:
            return 1, [self._corrupt("label offset table malformed", toc.label_indices_table)]
        end = toc.postings or toc.postings_table
        return 1 + len(offsets), self._table_problems(offsets, end, "label index", limit)

    def iter_series(self, refs: np.ndarray | None = None, batch_size: int = 20000) -> Iterator[SeriesBatch]:
        """Series in batches (all of them by default), in the given order."""
        if refs is None:
            refs = self.all_postings()
        for i in range(0, len(refs), batch_size):
            yield self.series(refs[i : i + batch_size])

    def iter_series_raw(self, refs: np.ndarray | None = None, batch_size: int = 50000) -> Iterator[RawSeries]:
        if refs is None:
            refs = self.all_postings()
        for i in range(0, len(refs), batch_size):
            yield self.series_raw(refs[i : i + batch_size])


def _union(lists: Sequence[np.ndarray]) -> np.ndarray:
    if not lists:
        return np.zeros(0, np.int64)
    if len(lists) == 1:
        return lists[0]
    return np.unique(np.concatenate(lists))


def _label_index_offsets(body: np.ndarray) -> list[int] | None:
    """File offsets of the label indices a label offset table names (None when the table is malformed)."""
    if body.shape[0] < 4:
        return None
    end, pos, offsets = body.shape[0], 4, []
    for _ in range(int(kb.be32(body, 0))):
        if pos >= end:
            return None
        pos += 1  # the entry's number of names (always 1)
        for _name in range(int(body[pos - 1])):
            n, pos = kb.uvarint(body, pos, end)
            if pos < 0 or n < 0 or n > end - pos:
                return None
            pos += n
        off, pos = kb.uvarint(body, pos, end)
        if pos < 0:
            return None
        offsets.append(off)
    return offsets
