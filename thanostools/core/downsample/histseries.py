"""Native-histogram downsampling: histogram chunks or histogram AggrChunks in, histogram AggrChunks out.

What Thanos writes (FORMATS.md §7.2, §7.4 step 5, §7.5): per window a count (XOR: number of histograms), the sum
of the window's histograms (float histogram chunk, gauge header) and a running counter histogram (float histogram
chunk; a reset — by hint, or detected — adds the sample itself, otherwise the difference to the previous one);
min and max are absent, the counter has no extra first/last samples. Every output chunk works in the smallest
schema of its input batch. Integer histograms are aggregated as float histograms.

Sub-chunks are written as Prometheus 3.x writes them (no 2.x trailing byte) with one layout per sub-chunk: the
union of its samples' buckets, which is where the appender's recoding ends. Within one output chunk every
histogram gets the widest zero bucket of the chunk (its buckets inside it join the zero count, as Prometheus
adds histograms of different zero widths). Refused: histograms with custom buckets (Thanos cannot aggregate them
either), and the rare zero-width change where a populated bucket straddles the wider zero bucket's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thanostools.core.chunkenc import histogram as hc
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, aggr_spans
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.downsample import histkernels, kernels
from thanostools.core.downsample.windows import target_chunk_count
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.histograms import HistogramBatch, HistogramLayouts, gather_ranges
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import F64, I64, U8
from thanostools.core.kernels.histogram import layout_indices

_EMPTY_XOR = np.zeros(2, dtype=np.uint8)
_COUNTER, _SUM = 0, 1


@dataclass(frozen=True)
class FloatHists:
    """Histogram samples as float histograms with absolute bucket indices (see ``histkernels``)."""

    t: I64
    hint: U8
    schema: I64
    zero_threshold: F64
    count: F64
    zero_count: F64
    total: F64
    p_off: I64
    p_idx: I64
    p_val: F64
    n_off: I64
    n_idx: I64
    n_val: F64

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def take(self, rows: I64) -> FloatHists:
        ps, pe = self.p_off[rows], self.p_off[rows + 1]
        ns, ne = self.n_off[rows], self.n_off[rows + 1]
        pg, ng = gather_ranges(ps, pe), gather_ranges(ns, ne)
        return FloatHists(
            self.t[rows], self.hint[rows], self.schema[rows], self.zero_threshold[rows], self.count[rows],
            self.zero_count[rows], self.total[rows], _bounds(pe - ps), self.p_idx[pg], self.p_val[pg],
            _bounds(ne - ns), self.n_idx[ng], self.n_val[ng])


def _bounds(sizes: I64) -> I64:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def float_hists(batch: HistogramBatch) -> FloatHists:
    """Every sample of a decoded batch (either kind) as float histograms with absolute bucket indices."""
    lay = batch.layouts
    if (lay.schema == hc.CUSTOM_BUCKETS_SCHEMA).any():
        raise UnsupportedError("downsampling native histograms with custom buckets (schema -53) is not "
                               "supported (Thanos cannot aggregate them either)")
    l_idx, l_b = layout_indices(lay.span_bounds, lay.span_offset.astype(np.int64),
                                           lay.span_length.astype(np.int64))
    has = np.diff(batch.bucket_offsets) > 0  # stale markers carry no buckets
    layout = batch.layout
    p_len = np.where(has, lay.n_pos[layout], 0)
    n_len = np.where(has, lay.n_neg[layout], 0)
    bo = batch.bucket_offsets[:-1]
    values = batch.buckets.astype(np.float64)
    return FloatHists(
        t=batch.t, hint=batch.hint, schema=lay.schema[layout].astype(np.int64),
        zero_threshold=lay.zero_threshold[layout], count=batch.count.astype(np.float64),
        zero_count=batch.zero_count.astype(np.float64), total=batch.sum,
        p_off=_bounds(p_len), p_idx=l_idx[gather_ranges(l_b[2 * layout], l_b[2 * layout] + p_len)],
        p_val=values[gather_ranges(bo, bo + p_len)],
        n_off=_bounds(n_len), n_idx=l_idx[gather_ranges(l_b[2 * layout + 1], l_b[2 * layout + 1] + n_len)],
        n_val=values[gather_ranges(bo + p_len, bo + p_len + n_len)],
    )


def concat_hists(parts: list[FloatHists]) -> FloatHists:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    def offs(name: str) -> I64:
        return _bounds(np.concatenate([np.diff(getattr(p, name)) for p in parts]).astype(np.int64))

    return FloatHists(cat("t"), cat("hint"), cat("schema"), cat("zero_threshold"), cat("count"),
                      cat("zero_count"), cat("total"), offs("p_off"), cat("p_idx"), cat("p_val"), offs("n_off"),
                      cat("n_idx"), cat("n_val"))


@njit
def expanded_rows(t: I64, stale: np.ndarray, chunk_off: I64) -> I64:
    """Rows Thanos' chunk expansion keeps: no stale markers, none before the last kept one of its chunk (the
    "last kept" starts at 0 in every chunk)."""
    keep = np.empty(t.shape[0], dtype=np.int64)
    n = 0
    for c in range(chunk_off.shape[0] - 1):
        last = 0
        for s in range(chunk_off[c], chunk_off[c + 1]):
            if not stale[s] and t[s] >= last:
                keep[n] = s
                n += 1
                last = t[s]
    return keep[:n].copy()


@dataclass(frozen=True)
class HistWindows:
    """``histkernels.aggregate_histograms`` output, plus the groups' zero thresholds and schemas."""

    win_off: I64
    t: I64
    n: I64
    cnt: F64
    zc: F64
    total: F64
    b_off: I64
    b_idx: I64
    b_val: F64
    counter_hint: I64
    schema: I64
    zero_threshold: F64


def aggregate(h: FloatHists, group_off: I64, resolution: int, *, block: str | None = None) -> HistWindows:
    """Reduce every group to its smallest schema and run the window walk over it."""
    sizes = np.diff(group_off)
    nonempty = sizes > 0
    starts = group_off[:-1][nonempty]
    schema = np.zeros(sizes.shape[0], dtype=np.int64)
    zt = np.zeros(sizes.shape[0], dtype=np.float64)
    if len(h):
        schema[nonempty] = np.minimum.reduceat(h.schema, starts)
        zt[nonempty] = np.maximum.reduceat(h.zero_threshold, starts)
        group_of = np.repeat(np.arange(sizes.shape[0]), sizes)
        h = widen_zero_buckets(h, zt[group_of], block)
        delta = h.schema - schema[group_of]
    else:
        delta = np.zeros(0, dtype=np.int64)
    p_off, p_idx, p_val = histkernels.reduce_buckets(h.p_off, h.p_idx, h.p_val, delta)
    n_off, n_idx, n_val = histkernels.reduce_buckets(h.n_off, h.n_idx, h.n_val, delta)
    with np.errstate(invalid="ignore", over="ignore"):
        out = histkernels.aggregate_histograms(
            group_off, schema, int(resolution), h.t, h.hint, h.schema, h.count, h.zero_count, h.total,
            p_off, p_idx, p_val, n_off, n_idx, n_val)
    return HistWindows(*out, schema=schema, zero_threshold=zt)


def widen_zero_buckets(h: FloatHists, threshold: F64, block: str | None) -> FloatHists:
    """Every histogram with the zero bucket ``threshold[i]`` wide (never narrower than its own): buckets that start
    inside it join its zero count. Zero-width changes are rare, so the few histograms that have one are walked one
    by one."""
    narrow = np.flatnonzero(h.zero_threshold < threshold)
    if narrow.size == 0:
        return h
    zero_count = h.zero_count.copy()
    keep_p = np.ones(h.p_idx.shape[0], dtype=np.bool_)
    keep_n = np.ones(h.n_idx.shape[0], dtype=np.bool_)
    for s in narrow.tolist():
        thr, schema = float(threshold[s]), int(h.schema[s])
        for off, idx, val, keep in ((h.p_off, h.p_idx, h.p_val, keep_p), (h.n_off, h.n_idx, h.n_val, keep_n)):
            for j in range(int(off[s]), int(off[s + 1])):
                i = int(idx[j])
                if hc.bucket_upper(schema, i - 1) >= thr:
                    break
                if hc.bucket_upper(schema, i) > thr and val[j] != 0:
                    where = f"block {block}: " if block else ""
                    raise UnsupportedError(f"{where}cannot downsample native histograms whose zero bucket widens "
                                           f"into a populated bucket within one output chunk (at t={int(h.t[s])})")
                zero_count[s] += val[j]
                keep[j] = False
    p_owner = np.repeat(np.arange(len(h)), np.diff(h.p_off))
    n_owner = np.repeat(np.arange(len(h)), np.diff(h.n_off))
    return FloatHists(
        h.t, h.hint, h.schema, np.maximum(h.zero_threshold, threshold), h.count, zero_count, h.total,
        _bounds(np.bincount(p_owner[keep_p], minlength=len(h)).astype(np.int64)), h.p_idx[keep_p], h.p_val[keep_p],
        _bounds(np.bincount(n_owner[keep_n], minlength=len(h)).astype(np.int64)), h.n_idx[keep_n], h.n_val[keep_n],
    )


def encode_windows(w: HistWindows, which: int, headers: U8) -> tuple[U8, I64]:
    """One float-histogram chunk per group (groups with windows only) of the counter (``which`` 0) or sum (1)
    histograms: (buf, offsets per group; an empty range for a group without windows)."""
    groups = np.flatnonzero(np.diff(w.win_off) > 0)
    nw = w.t.shape[0]
    h = 2 * np.arange(nw) + which
    chunk_of_win = np.repeat(np.arange(groups.shape[0]), np.diff(w.win_off)[groups])
    k = groups.shape[0]
    sides = []
    for side in (0, 1):
        lo, hi = w.b_off[2 * h + side], w.b_off[2 * h + side + 1]
        win_of = np.repeat(np.arange(nw), hi - lo)
        idx = w.b_idx[gather_ranges(lo, hi)]
        # union of bucket indices per chunk: unique (chunk, index) keys; a bucket's place is its key's rank
        # minus the rank of its chunk's first key
        keys = (chunk_of_win[win_of].astype(np.int64) << 32) | (idx + (1 << 31))
        uniq, rank = np.unique(keys, return_inverse=True)
        first = np.searchsorted(uniq, np.arange(k, dtype=np.int64) << 32)
        n_side = np.diff(np.append(first, uniq.shape[0]))
        union = [(uniq[first[c] : first[c] + n_side[c]] & 0xFFFFFFFF) - (1 << 31) for c in range(k)]
        place = rank.reshape(-1) - first[chunk_of_win[win_of]]
        sides.append((lo, hi, win_of, place, n_side.astype(np.int64), union))
    n_pos, n_neg = sides[0][4], sides[1][4]
    bucket_offsets = _bounds((n_pos + n_neg)[chunk_of_win])
    buckets = np.zeros(int(bucket_offsets[-1]), dtype=np.float64)
    for side, (lo, hi, win_of, place, _, _) in enumerate(sides):
        base = bucket_offsets[win_of] + (0 if side == 0 else n_pos[chunk_of_win[win_of]])
        buckets[base + place] = w.b_val[gather_ranges(lo, hi)]
    union = [sides[0][5], sides[1][5]]
    layouts = _union_layouts(union, w.schema[groups], w.zero_threshold[groups])
    batch = HistogramBatch(
        is_float=True, offsets=_bounds(np.diff(w.win_off)[groups]),
        encoding=np.full(groups.shape[0], hc.ENC_FLOAT_HISTOGRAM, dtype=np.uint8), header=headers[groups],
        t=w.t, st=np.zeros(nw, dtype=np.int64), hint=np.zeros(nw, dtype=np.uint8), count=w.cnt[h],
        zero_count=w.zc[h], sum_bits=w.total[h].view(np.uint64), layout=chunk_of_win.astype(np.int64),
        bucket_offsets=bucket_offsets, buckets=buckets, layouts=layouts)
    buf, offsets = hc.encode_batch(batch, flavor="3")
    full = np.zeros(w.win_off.shape[0], dtype=np.int64)
    ends = np.zeros(w.win_off.shape[0] - 1, dtype=np.int64)
    ends[groups] = offsets[1:]
    full[1:] = np.maximum.accumulate(ends) if ends.size else ends
    return buf, full


def _union_layouts(union: list[list[I64]], schema: I64, zt: F64) -> HistogramLayouts:
    span_off: list[int] = []
    span_len: list[int] = []
    span_bounds = [0]
    for c in range(len(union[0])):
        for side in (0, 1):
            offs, lens = hc._union_spans(union[side][c])
            span_off.extend(offs)
            span_len.extend(lens)
            span_bounds.append(len(span_off))
    k = len(union[0])
    return HistogramLayouts(
        schema=schema.astype(np.int32), zero_threshold=zt.astype(np.float64),
        n_pos=np.array([u.shape[0] for u in union[0]], dtype=np.int64),
        n_neg=np.array([u.shape[0] for u in union[1]], dtype=np.int64),
        span_bounds=np.array(span_bounds, dtype=np.int64), span_offset=np.array(span_off, dtype=np.int32),
        span_length=np.array(span_len, dtype=np.uint32), custom_bounds=np.zeros(k + 1, dtype=np.int64),
        custom_values=np.zeros(0, dtype=np.float64))


def _headers(w: HistWindows, gauge: np.ndarray) -> tuple[U8, U8]:
    """(counter, sum) chunk headers per group: the sum is a gauge; the counter a gauge for gauge series, else
    reset only when its first histogram still carries the reset hint (Prometheus' appender on a new chunk)."""
    counter = np.where(w.counter_hint == hc.HINT_RESET, hc.HEADER_RESET, hc.HEADER_NOT_RESET)
    counter = np.where(gauge, hc.HEADER_GAUGE, counter).astype(np.uint8)
    return counter, np.full(counter.shape[0], hc.HEADER_GAUGE, dtype=np.uint8)


def _group_gauge(h: FloatHists, group_off: I64) -> np.ndarray:
    first = np.minimum(group_off[:-1], max(len(h) - 1, 0))
    return (np.diff(group_off) > 0) & (h.hint[first] == hc.HINT_GAUGE) if len(h) else np.zeros(
        group_off.shape[0] - 1, dtype=bool)


def _with_gauge_hints(h: FloatHists, gauge: np.ndarray, group_off: I64) -> FloatHists:
    """Thanos marks the whole batch gauge when its first histogram is one (no reset detection then)."""
    per = np.repeat(gauge, np.diff(group_off))
    if not per.any():
        return h
    hint = np.where(per, hc.HINT_GAUGE, h.hint).astype(np.uint8)
    return FloatHists(h.t, hint, h.schema, h.zero_threshold, h.count, h.zero_count, h.total, h.p_off, h.p_idx,
                      h.p_val, h.n_off, h.n_idx, h.n_val)


@dataclass(frozen=True)
class HistAggrChunks:
    """Histogram AggrChunks per group: payloads ``buf[offsets[g]:offsets[g+1]]``, mint, maxt, count samples."""

    buf: U8
    offsets: I64
    mint: I64
    maxt: I64
    num_samples: I64


def _assemble(count_buf: U8, count_off: I64, sum_buf: U8, sum_off: I64, ctr_buf: U8, ctr_off: I64,
              ) -> tuple[U8, I64]:
    k = count_off.shape[0] - 1
    data = np.concatenate([count_buf, sum_buf, ctr_buf]).astype(np.uint8)
    s_base, c_base = count_buf.shape[0], count_buf.shape[0] + sum_buf.shape[0]
    starts = np.zeros((k, 5), dtype=np.int64)
    ends = np.zeros((k, 5), dtype=np.int64)
    starts[:, Aggr.COUNT], ends[:, Aggr.COUNT] = count_off[:-1], count_off[1:]
    starts[:, Aggr.SUM], ends[:, Aggr.SUM] = s_base + sum_off[:-1], s_base + sum_off[1:]
    starts[:, Aggr.COUNTER], ends[:, Aggr.COUNTER] = c_base + ctr_off[:-1], c_base + ctr_off[1:]
    enc = np.zeros((k, 5), dtype=np.uint8)
    enc[:, Aggr.COUNT] = kernels.ENC_XOR
    enc[:, Aggr.SUM] = hc.ENC_FLOAT_HISTOGRAM
    enc[:, Aggr.COUNTER] = hc.ENC_FLOAT_HISTOGRAM
    return kernels.assemble_aggr_payloads(data, starts.reshape(-1), ends.reshape(-1), enc.reshape(-1),
                                          (ends > starts).reshape(-1))


def _count_chunks(t: I64, v: F64, win_off: I64) -> tuple[U8, I64]:
    buf, off = xor.encode_batch(t, v.view(np.uint64), win_off)
    return buf, off


def downsample_raw_hists(h: FloatHists, chunk_off: I64, run_chunks: I64, resolution: int, *,
                         block: str | None = None) -> tuple[HistAggrChunks, I64]:
    """Raw histogram runs → AggrChunks. ``h`` holds the decoded samples of the runs' chunks in order (chunk c
    is ``chunk_off[c]:chunk_off[c+1]``), run r is chunks ``run_chunks[r]:run_chunks[r+1]``. Returns the chunks and
    per run the range of its output chunks."""
    rows = expanded_rows(h.t, h.total.view(np.uint64) == np.uint64(STALE_NAN_BITS), chunk_off)
    kept_before = np.searchsorted(rows, chunk_off, side="left")
    h = h.take(rows)
    run_off = kept_before[run_chunks]
    groups = histkernels.raw_batches(h.t, run_off, int(resolution))
    keep = ~np.isnan(h.total)
    kept = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    group_off = kept[groups]
    group_run = np.searchsorted(run_off, groups[:-1], side="right") - 1
    nonempty = np.diff(group_off) > 0
    group_off = np.concatenate([[0], group_off[1:][nonempty]]).astype(np.int64)
    group_run = group_run[nonempty]
    h = h.take(np.flatnonzero(keep))
    gauge = _group_gauge(h, group_off)
    w = aggregate(_with_gauge_hints(h, gauge, group_off), group_off, resolution, block=block)
    out = _encode_groups(w, w, w.win_off, w.t, w.n.astype(np.float64), gauge)
    runs = np.searchsorted(group_run, np.arange(run_chunks.shape[0]), side="left").astype(np.int64)
    return out, runs


def _encode_groups(counter: HistWindows, sums: HistWindows, count_off: I64, count_t: I64, count_v: F64,
                   gauge: np.ndarray) -> HistAggrChunks:
    c_head, s_head = _headers(counter, gauge)
    ctr_buf, ctr_off = encode_windows(counter, _COUNTER, c_head)
    sum_buf, sum_off = encode_windows(sums, _SUM, s_head)
    cnt_buf, cnt_off = _count_chunks(count_t, count_v, count_off)
    buf, offsets = _assemble(cnt_buf, cnt_off, sum_buf, sum_off, ctr_buf, ctr_off)
    k = count_off.shape[0] - 1
    mint = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    maxt = np.full(k, np.iinfo(np.int64).min, dtype=np.int64)
    for off, t in ((counter.win_off, counter.t), (sums.win_off, sums.t), (count_off, count_t)):
        sizes = np.diff(off)
        has = sizes > 0
        if has.any():
            starts = off[:-1][has]
            mint[has] = np.minimum(mint[has], np.minimum.reduceat(t, starts))
            maxt[has] = np.maximum(maxt[has], np.maximum.reduceat(t, starts))
    return HistAggrChunks(buf, offsets, mint, maxt, np.diff(count_off).astype(np.int64))


def is_histogram_aggr(buf: U8, starts: I64, ends: I64) -> np.ndarray:
    """Per AggrChunk: its counter sub-chunk is a histogram chunk (Thanos' isHistogramAggrChunk)."""
    _, _, enc = aggr_spans(buf, starts, ends, Aggr.COUNTER)
    return np.isin(enc, (hc.ENC_HISTOGRAM, hc.ENC_FLOAT_HISTOGRAM))


def _decode_hist_aggregate(buf: U8, starts: I64, ends: I64, which: Aggr) -> tuple[FloatHists, I64]:
    """Aggregate ``which`` of every chunk as float histograms, expanded as Thanos does; absent ones empty.
    Returns the samples and per chunk their range."""
    s, e, enc = aggr_spans(buf, starts, ends, which)
    bad = np.flatnonzero((enc != -1) & ~np.isin(enc, (hc.ENC_HISTOGRAM, hc.ENC_FLOAT_HISTOGRAM)))
    if bad.size:
        raise CorruptBlockError(f"AggrChunk {int(bad[0])}: {which.name.lower()} sub-chunk has encoding "
                                f"{int(enc[bad[0]])} in a histogram AggrChunk", offset=int(starts[bad[0]]))
    present = enc != -1
    ints, floats, is_float = hc.decode_by_kind(buf, s[present], e[present], enc[present], flavor="3")
    parts = float_hists(ints), float_hists(floats)
    both = concat_hists(list(parts))
    # chunk order: the chunks of each kind are consecutive in their batch
    kind_rank = np.zeros(is_float.shape[0], dtype=np.int64)
    kind_rank[~is_float] = np.arange(int((~is_float).sum()))
    kind_rank[is_float] = np.arange(int(is_float.sum()))
    sizes_int, sizes_float = np.diff(ints.offsets), np.diff(floats.offsets)
    lo = np.where(is_float, len(ints) + floats.offsets[:-1][kind_rank] if sizes_float.size else 0,
                  ints.offsets[:-1][kind_rank] if sizes_int.size else 0)
    size = np.where(is_float, sizes_float[kind_rank] if sizes_float.size else 0,
                    sizes_int[kind_rank] if sizes_int.size else 0)
    chunk_sizes = np.zeros(enc.shape[0], dtype=np.int64)
    chunk_sizes[present] = size
    h = both.take(gather_ranges(lo, lo + size))
    chunk_off = _bounds(chunk_sizes)
    rows = expanded_rows(h.t, h.total.view(np.uint64) == np.uint64(STALE_NAN_BITS), chunk_off)
    return h.take(rows), np.searchsorted(rows, chunk_off, side="left").astype(np.int64)


def _decode_counts(buf: U8, starts: I64, ends: I64) -> tuple[I64, F64, I64]:
    """Count sub-chunks (XOR) decoded and expanded: (t, v, per chunk range)."""
    s, e, enc = aggr_spans(buf, starts, ends, Aggr.COUNT)
    bad = np.flatnonzero((enc != -1) & (enc != kernels.ENC_XOR))
    if bad.size:
        raise CorruptBlockError(f"AggrChunk {int(bad[0])}: count sub-chunk has encoding {int(enc[bad[0]])}",
                                offset=int(starts[bad[0]]))
    data = np.concatenate([xor.as_u8(buf), _EMPTY_XOR])
    empty_at = data.shape[0] - 2
    s = np.where(enc == -1, empty_at, s)
    e = np.where(enc == -1, empty_at + 2, e)
    dec = xor.decode_batch(data, s, e)
    rows = expanded_rows(dec.t, dec.v == np.uint64(STALE_NAN_BITS), dec.offsets)
    return dec.t[rows], dec.v[rows].view(np.float64), np.searchsorted(rows, dec.offsets, side="left").astype(
        np.int64)


def downsample_hist_aggr(buf: U8, starts: I64, ends: I64, run_chunks: I64, run_mint: I64, run_maxt: I64,
                         in_resolution: int, resolution: int, *, block: str | None = None,
                         ) -> tuple[HistAggrChunks, I64]:
    """Histogram AggrChunks (payloads ``buf[starts[i]:ends[i]]``, runs ``run_chunks``) → AggrChunks of
    ``resolution``, cut along input chunk boundaries (§7.5). Returns the chunks and per run its output range."""
    cnt_t, cnt_v, cnt_chunk = _decode_counts(buf, starts, ends)
    ns = np.diff(cnt_chunk)
    group_chunks = [0]
    for r in range(run_chunks.shape[0] - 1):  # one step per run (a series' histogram run)
        lo, hi = int(run_chunks[r]), int(run_chunks[r + 1])
        num = target_chunk_count(int(run_mint[r]), int(run_maxt[r]), in_resolution, resolution,
                                 int(ns[lo:hi].sum()))
        size = max(1, (hi - lo) // num)
        group_chunks.extend(range(lo + size, hi, size))
        if hi > lo:
            group_chunks.append(hi)
    gc = np.array(group_chunks, dtype=np.int64)
    counter, ctr_chunk = _decode_hist_aggregate(buf, starts, ends, Aggr.COUNTER)
    sums, sum_chunk = _decode_hist_aggregate(buf, starts, ends, Aggr.SUM)
    ctr_groups, sum_groups = ctr_chunk[gc], sum_chunk[gc]
    gauge = _group_gauge(counter, ctr_groups)
    wc = aggregate(_with_gauge_hints(counter, gauge, ctr_groups), ctr_groups, resolution, block=block)
    ws = aggregate(sums, sum_groups, resolution, block=block)
    count_off, count_t, count_v = histkernels.window_sums(cnt_t, cnt_v, cnt_chunk[gc], int(resolution))
    out = _encode_groups(wc, ws, count_off, count_t, count_v, gauge)
    group_run = np.searchsorted(run_chunks, gc[:-1], side="right") - 1
    runs = np.searchsorted(group_run, np.arange(run_chunks.shape[0]), side="left").astype(np.int64)
    return out, runs
