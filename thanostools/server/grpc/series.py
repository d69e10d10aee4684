"""The Series RPC as synchronous core work (FORMATS.md §9.6): plan, read chunks, then build frames.

1. Blocks are picked per external-label set and resolution (§7.8, ``querier.choose_blocks``).
2. From every block's index: series with a chunk overlapping [mint, maxt], labelled with the block's
   external labels (which win), minus ``without_replica_labels``, filtered by shard.
3. Series with equal final labels are merged (chunks of all blocks, sorted by min_time), sorted by
   label set and cut at ``limit``; only then are chunks read, CRC-checked, one batch per block.
4. Frames are built lazily so the caller can stream them a few hundred at a time.

Chunks are returned whole, byte for byte as stored; 0xFF chunks are split into the requested aggregates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from thanostools._proto.store.hintspb import hints_pb2
from thanostools._proto.store.storepb import rpc_pb2
from thanostools.core import labels as labelset
from thanostools.core.chunkenc.aggr import AGGR_ENCODING, aggr_spans
from thanostools.core.errors import FormatError, UnsupportedError
from thanostools.core.inspect import BlockInfo
from thanostools.core.kernels import binary as kb
from thanostools.core.labels import Labels
from thanostools.core.querier import choose_blocks
from thanostools.core.tsdb.block import Block
from thanostools.server.grpc.blocks import BLOCK_ERRORS, BlockSet, Failures, block_matches, index_matchers
from thanostools.server.grpc.convert import AGGR_FIELDS, CHUNK_TYPES, SeriesQuery, Shard, pack_any
from thanostools.server.grpc.wire import CHUNK_FIELDS, LabelEncoder, encode_frames


@dataclass
class _Entry:
    """One block's part of one series: its chunk refs and time ranges."""

    block: int
    refs: np.ndarray
    mint: np.ndarray
    maxt: np.ndarray
    first: int = 0  # position of its first chunk in the block's read batch


@dataclass
class _BlockChunks:
    """A block's chunks as read for this request: ``field -> (starts, ends, storepb type or -1)`` per chunk."""

    buf: np.ndarray
    fields: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class SeriesPlan:
    series: list[tuple[Labels, list[_Entry]]]
    chunks: dict[int, _BlockChunks]
    warnings: list[str]
    queried: list[str]
    stats: dict[str, int] = field(default_factory=dict)


def in_shard(labels: Labels, shard: Shard | None) -> bool:
    """§9.3: XXH64 over the selected labels, modulo the shard count."""
    if shard is None:
        return True
    picked = tuple((n, v) for n, v in labels if (n in shard.labels) == shard.by)
    return labelset.label_hash(picked) % shard.total == shard.index


def _final_labels(series_labels: Labels, ext: Labels, without: frozenset[str]) -> Labels:
    out = labelset.merge(series_labels, ext) if ext else series_labels
    return labelset.without(out, without) if without else out


def _block_entries(block: Block, info: BlockInfo, bi: int, q: SeriesQuery,
                   ) -> list[tuple[Labels, _Entry]]:
    matchers = index_matchers(info, q.matchers)
    if matchers is None:
        return []
    ext = info.meta.external_labels
    out: list[tuple[Labels, _Entry]] = []
    for sb in block.index.iter_series(block.postings(matchers)):
        keep = sb.chunks_in_range(q.mint, q.maxt)
        offs = sb.chunk_offsets
        rows, counts = sb.rows_in_range(q.mint, q.maxt)
        for i, n in zip(rows.tolist(), counts.tolist(), strict=True):
            final = _final_labels(sb.labels[i], ext, q.without)
            if q.shard is not None and not in_shard(final, q.shard):
                continue
            a, b = int(offs[i]), int(offs[i + 1])
            sel = slice(a, b) if n == b - a else np.flatnonzero(keep[a:b]) + a
            out.append((final, _Entry(bi, sb.chunk_ref[sel], sb.chunk_mint[sel], sb.chunk_maxt[sel])))
    return out


def _translate(encodings: np.ndarray, what: str) -> np.ndarray:
    types = np.full(encodings.shape[0], -1, np.int64)
    for enc, typ in CHUNK_TYPES.items():
        types[encodings == enc] = typ
    if (types < 0).any():
        bad = int(encodings[types < 0][0])
        raise UnsupportedError(f"{what} encoding {bad} cannot be served over the StoreAPI")
    return types


def _read_chunks(block: Block, refs: np.ndarray, q: SeriesQuery) -> _BlockChunks:
    # Local chunks are served from the mmapped segment where they lie (CRCs checked either way): the page
    # cache holds them once for every request instead of one heap copy per request.
    located = block.locate_chunks(refs)
    batch = block.xor2_as_xor(located if located is not None else block.chunks.read(refs, check_crc=True), refs)
    n = refs.shape[0]

    def field(pos: np.ndarray, starts: np.ndarray, ends: np.ndarray, types: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fs, fe, ft = np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, -1, np.int64)
        fs[pos], fe[pos], ft[pos] = starts, ends, types
        return fs, fe, ft

    fields: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    aggr = batch.encodings == AGGR_ENCODING
    raw = np.flatnonzero(~aggr)
    if raw.size:
        fields["raw"] = field(raw, batch.starts[raw], batch.ends[raw], _translate(batch.encodings[raw], "chunk"))
    idx = np.flatnonzero(aggr)
    for a in q.aggregates if idx.size else ():
        starts, ends, sub = aggr_spans(batch.buf, batch.starts[idx], batch.ends[idx], a)
        if (sub < 0).any():
            raise FormatError(f"aggregate {a.name.lower()} does not exist in downsampled chunk")
        fields[AGGR_FIELDS[a]] = field(idx, starts, ends, _translate(sub, f"{a.name.lower()} sub-chunk"))
    return _BlockChunks(batch.buf, fields)


def plan_series(blockset: BlockSet, q: SeriesQuery) -> SeriesPlan:
    """Everything except frame building; raises PartialResponseAbort under ABORT."""
    failures = blockset.failures(q.abort)
    infos = [b for b in blockset.current() if block_matches(b, q.block_matchers)]
    chosen = choose_blocks(infos, q.mint, q.maxt, q.max_resolution)
    grouped: dict[Labels, list[_Entry]] = defaultdict(list)
    blocks: dict[int, tuple[BlockInfo, Block]] = {}
    for bi, info in enumerate(chosen):
        if index_matchers(info, q.matchers) is None:
            continue
        try:
            block = blockset.open(info)
            entries = _block_entries(block, info, bi, q)
        except BLOCK_ERRORS as exc:
            blockset.failed(info, exc, failures)
            continue
        blocks[bi] = (info, block)
        for final, entry in entries:
            grouped[final].append(entry)
    keys = sorted(grouped)
    if q.limit:
        keys = keys[: q.limit]
    chunks: dict[int, _BlockChunks] = {}
    if not q.skip_chunks:
        chunks = _read_all(blockset, blocks, [(k, grouped[k]) for k in keys], q, failures)
        keys = [k for k in keys if any(e.block in chunks for e in grouped[k])]
    series = [(k, [e for e in grouped[k] if q.skip_chunks or e.block in chunks]) for k in keys]
    stats = {"blocks_queried": len(blocks), "merged_series_count": len(series),
             "merged_chunks_count": sum(e.refs.shape[0] for _, es in series for e in es)}
    return SeriesPlan(series, chunks, failures.warnings, [info.ulid for info, _ in blocks.values()], stats)


def _read_all(blockset: BlockSet, blocks: dict[int, tuple[BlockInfo, Block]],
              series: Sequence[tuple[Labels, list[_Entry]]], q: SeriesQuery, failures: Failures,
              ) -> dict[int, _BlockChunks]:
    per_block: dict[int, list[_Entry]] = defaultdict(list)
    for _, entries in series:
        for e in entries:
            per_block[e.block].append(e)
    out: dict[int, _BlockChunks] = {}
    for bi, entries in per_block.items():
        info, block = blocks[bi]
        pos = 0
        for e in entries:
            e.first = pos
            pos += e.refs.shape[0]
        try:
            out[bi] = _read_chunks(block, np.concatenate([e.refs for e in entries]), q)
        except BLOCK_ERRORS as exc:
            blockset.failed(info, exc, failures)
    return out


SERIES_PER_CALL = 1024  # series encoded per kernel call (frames are yielded as they are made)


def frames(plan: SeriesPlan, q: SeriesQuery) -> Iterator[bytes]:
    """Warning frames, series (or batch) frames in label order, then a hints frame: encoded SeriesResponses."""
    for w in plan.warnings:
        yield rpc_pb2.SeriesResponse(warning=w).SerializeToString()
    labels = LabelEncoder()
    step = SERIES_PER_CALL if q.batch_size <= 1 else max(1, SERIES_PER_CALL // q.batch_size) * q.batch_size
    for i in range(0, len(plan.series), step):
        yield from _encode_part(plan, plan.series[i : i + step], labels, q)
    hints = hints_pb2.SeriesResponseHints(queried_blocks=[hints_pb2.Block(id=u) for u in plan.queried],
                                          query_stats=hints_pb2.QueryStats(**plan.stats))
    yield rpc_pb2.SeriesResponse(hints=pack_any(hints)).SerializeToString()


def _encode_part(plan: SeriesPlan, part: Sequence[tuple[Labels, list[_Entry]]], labels: LabelEncoder,
                 q: SeriesQuery) -> list[bytes]:
    """Frames of some series: their chunks (of all blocks, by min_time) as AggrChunks with the fields read."""
    encoded = [labels.encode(lab) for lab, _ in part]
    rows = _chunk_rows(part, q.skip_chunks)
    order = np.lexsort((rows.mint, rows.series))  # stable: equal min_time keeps block order
    mint, maxt, block, pos = rows.mint[order], rows.maxt[order], rows.block[order], rows.pos[order]
    n = mint.shape[0]
    starts = np.zeros((n, len(CHUNK_FIELDS)), np.int64)
    ends = np.zeros((n, len(CHUNK_FIELDS)), np.int64)
    types = np.full((n, len(CHUNK_FIELDS)), -1, np.int64)
    for bi in np.unique(block).tolist():
        at = np.flatnonzero(block == bi)
        for f, name in enumerate(CHUNK_FIELDS):
            got = plan.chunks[bi].fields.get(name)
            if got is not None:
                starts[at, f], ends[at, f], types[at, f] = got[0][pos[at]], got[1][pos[at]], got[2][pos[at]]
    data = _gather_data(plan, block, starts, ends, types)
    chunk_offsets = np.zeros(len(part) + 1, np.int64)
    chunk_offsets[1:] = np.cumsum(np.bincount(rows.series, minlength=len(part)))
    return encode_frames(encoded, chunk_offsets, mint, maxt, starts, ends, types, data, q.batch_size)


@dataclass(frozen=True)
class _Rows:
    series: np.ndarray
    mint: np.ndarray
    maxt: np.ndarray
    block: np.ndarray
    pos: np.ndarray  # position of the chunk in its block's read batch


def _chunk_rows(part: Sequence[tuple[Labels, list[_Entry]]], skip_chunks: bool) -> _Rows:
    entries = [] if skip_chunks else [(i, e) for i, (_, es) in enumerate(part) for e in es]
    if not entries:
        empty = np.zeros(0, np.int64)
        return _Rows(empty, empty, empty, empty, empty)
    counts = np.array([e.refs.shape[0] for _, e in entries], dtype=np.int64)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return _Rows(np.repeat(np.array([i for i, _ in entries], dtype=np.int64), counts),
                 np.concatenate([e.mint for _, e in entries]).astype(np.int64),
                 np.concatenate([e.maxt for _, e in entries]).astype(np.int64),
                 np.repeat(np.array([e.block for _, e in entries], dtype=np.int64), counts),
                 np.repeat(np.array([e.first for _, e in entries], dtype=np.int64), counts) + within)


def _gather_data(plan: SeriesPlan, block: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 types: np.ndarray) -> np.ndarray:
    """The bytes of every present field copied into one buffer; ``starts``/``ends`` are rewritten to it."""
    present = types >= 0
    lengths = np.where(present, ends - starts, 0)
    at = np.zeros(lengths.size + 1, np.int64)
    at[1:] = np.cumsum(lengths.ravel())
    data = np.empty(max(int(at[-1]), 1), np.uint8)
    flat_block = np.repeat(block, starts.shape[1])
    flat_present = present.ravel()
    for bi in np.unique(block).tolist():
        idx = np.flatnonzero((flat_block == bi) & flat_present)
        kb.scatter_spans(plan.chunks[bi].buf, starts.ravel()[idx], ends.ravel()[idx], data, at[idx])
    starts[:] = at[:-1].reshape(starts.shape)
    ends[:] = starts + lengths
    return data
