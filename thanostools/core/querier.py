"""A ``Querier`` over a bucket's blocks, reading them the way a Thanos store gateway + querier pair does.

* blocks overlapping the range are picked per external-label set and resolution (FORMATS.md §7.8):
  raw only when the max resolution window (MRW) is 0, otherwise the coarsest resolution ≤ MRW with
  gaps filled by finer blocks; rate-like functions lower MRW to ``min(MRW, range/2)``;
* external labels (meta ``thanos.labels``) are added to series labels, win over series labels of the
  same name, and can be matched by matchers;
* series with equal final labels from several blocks are chained (equal timestamps once);
* downsampled blocks are read back through the aggregate chosen by ``hints.func`` (§7.8 table).

The blocks are those of a :class:`BlockCatalog` view; which ones (compaction leftovers, shards, marks …)
is the catalog's filters' business, replicas are merged by ``dedup.DedupQuerier`` and failing blocks
handled by ``partial.PartialBlockQuerier``.

``select`` streams raw selections: the index is read first (matching series, their chunks in range,
labels numbered across blocks), then consecutive batches of series are decoded one at a time, each
chunk straight into its place in the batch's per-series layout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import lt
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from thanostools.core import labels as labelset
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, counter_reset_series
from thanostools.core.constants import RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample.readback import average_histograms, counter_histograms, hists_of
from thanostools.core.errors import CorruptBlockError
from thanostools.core.histograms import concat_histogram_batches, empty_histogram_batch
from thanostools.core.inspect import BlockInfo
from thanostools.core.kernels import select as select_kernels
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, matches_all
from thanostools.core.series import (
    DEFAULT_BATCH_SAMPLES,
    KIND_FLOAT,
    KIND_FLOAT_HISTOGRAM,
    KIND_INT_HISTOGRAM,
    HistogramColumns,
    LabelResult,
    Querier,
    SampleBatch,
    SampleRun,
    SelectHints,
    SeriesStream,
)
from thanostools.core.storage import chain_runs, runs_of

if TYPE_CHECKING:
    from thanostools.core.catalog import BlockCatalog
    from thanostools.core.partial import PartialResponse
    from thanostools.core.tsdb.block import Block
    from thanostools.core.tsdb.index import RawSeries

RESOLUTIONS = (RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW)  # coarsest first
# Functions for which the querier lowers MRW to half the range so every window holds two samples.
RANGE_LOWERING_FUNCS = frozenset({
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "holt_winters",
    "double_exponential_smoothing",
})
# Functions read back through the counter aggregate (§7.6 iterator).
COUNTER_AGGR_FUNCS = frozenset({"rate", "increase", "irate", "resets", "xrate", "xincrease"})

AVG = "avg"  # sum / count per window (the default read-back)
# Planning estimate of samples per chunk before anything is decoded (Prometheus cuts chunks at 120).
EST_SAMPLES_PER_CHUNK = 120


def aggregate_for(func: str) -> Aggr | str:
    """The aggregate a downsampled block is read through for the enclosing function ``func`` (§7.8)."""
    if func == "min" or func.startswith("min_"):
        return Aggr.MIN
    if func == "max" or func.startswith("max_"):
        return Aggr.MAX
    if func == "count" or func.startswith("count_"):
        return Aggr.COUNT
    if func.startswith("sum_"):
        return Aggr.SUM
    if func in COUNTER_AGGR_FUNCS:
        return Aggr.COUNTER
    return AVG


def effective_resolution(mrw: int, hints: SelectHints | None) -> int:
    """MRW after the rate-like lowering ``min(MRW, range/2)``."""
    if hints is not None and hints.range > 0 and hints.func in RANGE_LOWERING_FUNCS:
        return min(mrw, hints.range // 2)
    return mrw


# --- block choice ----------------------------------------------------------------------------------


def _fill(by_res: dict[int, list[BlockInfo]], levels: Sequence[int], mint: int, maxt: int) -> list[BlockInfo]:
    """Blocks of ``levels[0]`` overlapping [mint, maxt], gaps filled recursively with finer levels."""
    if mint > maxt or not levels:
        return []
    finer = levels[1:]
    out: list[BlockInfo] = []
    start = mint
    for b in by_res.get(levels[0], []):
        if b.meta.max_time <= mint:
            continue
        if b.meta.min_time > maxt:
            break
        out += _fill(by_res, finer, start, b.meta.min_time - 1)
        out.append(b)
        start = b.meta.max_time
    return out + _fill(by_res, finer, start, maxt)


def choose_blocks(infos: Sequence[BlockInfo], mint: int, maxt: int, mrw: int) -> list[BlockInfo]:
    """Blocks to read for [mint, maxt] at max resolution window ``mrw``, per external-label set
    (compaction leftovers are expected to be filtered out by the catalog already)."""
    groups: dict[Labels, dict[int, list[BlockInfo]]] = defaultdict(lambda: defaultdict(list))
    for info in sorted(infos, key=lambda b: (b.meta.min_time, b.ulid)):
        groups[info.meta.external_labels][info.meta.resolution].append(info)
    levels = [r for r in RESOLUTIONS if r <= mrw]
    chosen: list[BlockInfo] = []
    for by_res in groups.values():
        chosen += _fill(by_res, levels, mint, maxt)
    return chosen


# --- reading one block -----------------------------------------------------------------------------


@dataclass
class _Part:
    """One block's samples of one series."""

    t: NDArray[np.int64]
    v: NDArray[np.uint64]
    downsampled: bool
    order: tuple[int, int, str]
    hist: HistogramColumns | None = None


def split_external(matchers: Sequence[Matcher], ext: Labels) -> tuple[bool, list[Matcher]]:
    """(whether the block's external labels pass the matchers on their names, the matchers left for the index)."""
    names = {n for n, _ in ext}
    ext_matchers = [m for m in matchers if m.name in names]
    rest = [m for m in matchers if m.name not in names]
    return matches_all(ext_matchers, ext), rest


def _read_average(block: Block, matchers: Sequence[Matcher], mint: int, maxt: int) -> Iterator[SampleRun]:
    """Artificial average samples ``sum / count`` at every window of a downsampled block (histogram sums
    divided by their counts)."""
    refs = block.postings(matchers)
    for sb in block.index.iter_series(refs):
        sums = block.samples(sb, mint, maxt, aggregate=Aggr.SUM, histograms=True)
        counts = block.samples(sb, mint, maxt, aggregate=Aggr.COUNT, histograms=True)
        _check_aligned(block, sums, counts)
        count = counts.v.view(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            avg = (sums.v.view(np.float64) / count).view(np.uint64)
        hist = None if sums.hist is None else _average_columns(sums.hist, count)
        yield from runs_of([SampleBatch(sums.labels, sums.refs, sums.offsets, sums.t, avg, hist=hist)])


def _check_aligned(block: Block, sums: SampleBatch, counts: SampleBatch) -> None:
    """Sum and count of every series have samples at the same timestamps (Thanos: "not aligned")."""
    if sums.labels == counts.labels and np.array_equal(sums.offsets, counts.offsets) and np.array_equal(
            sums.t, counts.t):
        return
    for i in range(min(len(sums), len(counts))):
        lab, ts, _ = sums.series(i)
        lab_c, tc, _ = counts.series(i)
        if lab != lab_c or not np.array_equal(ts, tc):
            break
    raise CorruptBlockError(f"series {labelset.format_labels(lab)}: sum and count timestamps differ",
                            block=block.ulid)


def _average_columns(sums: HistogramColumns, count: NDArray[np.float64]) -> HistogramColumns:
    """The histogram rows of ``sums`` divided by their counts, as float histograms."""
    kind = sums.kind.copy()
    row = sums.row.copy()
    parts = []
    base = 0
    for k, batch in ((KIND_INT_HISTOGRAM, sums.ints), (KIND_FLOAT_HISTOGRAM, sums.floats)):
        mine = np.flatnonzero(sums.kind == k)
        parts.append(average_histograms(batch, sums.row[mine], count[mine]))
        kind[mine] = KIND_FLOAT_HISTOGRAM
        row[mine] = base + np.arange(mine.shape[0])
        base += mine.shape[0]
    floats = concat_histogram_batches(parts, is_float=True)
    return HistogramColumns(kind, row, empty_histogram_batch(is_float=False), floats)


def read_block(block: Block, matchers: Sequence[Matcher], mint: int, maxt: int, aggregate: Aggr | str,
               ) -> Iterator[SampleRun]:
    """A block's matching series: raw samples, or the chosen aggregate of a downsampled block (native
    histograms in each run's histogram part)."""
    res = block.meta.resolution
    if res == 0:
        return runs_of(block.select(matchers, mint, maxt, histograms=True))
    if aggregate == AVG:
        return _read_average(block, matchers, mint, maxt)
    assert isinstance(aggregate, Aggr)
    if aggregate == Aggr.COUNTER:
        # A chunk's true first raw value sits up to one window before its first window (§7.4): keep it.
        mint = mint - res if mint >= -(2**63) + res else mint
    return runs_of(block.select(matchers, mint, maxt, aggregate=aggregate, histograms=True))


# --- merging ---------------------------------------------------------------------------------------


def merge_parts(lab: Labels, parts: list[_Part], counter: bool, mint: int, maxt: int) -> SampleRun:
    """One series' samples from its blocks: chained, or (counters over downsampled data) §7.6-adjusted."""
    parts.sort(key=lambda p: p.order)
    if counter and any(p.downsampled for p in parts):
        return _counter_run(lab, parts, mint, maxt)
    return chain_runs(lab, [(lab, p.t, p.v, p.hist) for p in parts])


def _counter_run(lab: Labels, parts: list[_Part], mint: int, maxt: int) -> SampleRun:
    """The parts' counter samples through the reset iterator: floats and histograms each made monotone."""
    # Equal timestamps must survive here: they carry the chunks' true last raw values.
    t = np.concatenate([p.t for p in parts])
    v = np.concatenate([p.v for p in parts])
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if all(p.hist is None for p in parts):
        ct, cv = counter_reset_series(t, v)
        keep = (ct >= mint) & (ct <= maxt)
        return lab, ct[keep], cv[keep].view(np.uint64), None
    cols = HistogramColumns.concat([(None if p.hist is None else p.hist.compact(), int(p.t.shape[0]))
                                    for p in parts]).take(order)
    is_hist = cols.kind != KIND_FLOAT
    ft, fv = counter_reset_series(t[~is_hist], v[~is_hist])
    hist_rows = np.flatnonzero(is_hist)
    kept, totals = counter_histograms(hists_of(cols, hist_rows))
    ht = t[hist_rows[kept]]
    all_t = np.concatenate([ft, ht])
    all_v = np.concatenate([fv.view(np.uint64), totals.sum_bits])
    kind = np.concatenate([np.full(ft.shape[0], KIND_FLOAT, np.uint8),
                           np.full(ht.shape[0], KIND_FLOAT_HISTOGRAM, np.uint8)])
    row = np.concatenate([np.full(ft.shape[0], -1, np.int64), np.arange(ht.shape[0], dtype=np.int64)])
    by_time = np.argsort(all_t, kind="stable")
    by_time = by_time[(all_t[by_time] >= mint) & (all_t[by_time] <= maxt)]
    hist = HistogramColumns(kind[by_time], row[by_time], empty_histogram_batch(is_float=False), totals)
    return lab, all_t[by_time], all_v[by_time], hist


# --- streaming raw blocks --------------------------------------------------------------------------


@dataclass
class _Source:
    """One raw block's share of a selection: its matching series with chunks in range (index data only)."""

    block: Block
    sb: RawSeries
    rows: np.ndarray  # rows of ``sb`` with chunks in range
    labels: list[Labels]  # final labels of those rows (dropped once the global ids are set)
    est: np.ndarray  # estimated samples per row
    gid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # global series id per row


def _strictly_sorted(labels: list[Labels]) -> bool:
    return all(map(lt, labels, labels[1:]))


def assign_global_ids(sources: Sequence[_Source]) -> list[Labels]:
    """Number the union of the sources' series in label order; sets every source's ``gid``."""
    first = sources[0].labels
    if all(s.labels == first for s in sources[1:]) and _strictly_sorted(first):
        for s in sources:
            s.gid = np.arange(len(first), dtype=np.int64)
        return first
    index: dict[Labels, int] = {}
    for s in sources:
        s.gid = np.fromiter((index.setdefault(lab, len(index)) for lab in s.labels), np.int64, len(s.labels))
    uniq = list(index)
    order = sorted(range(len(uniq)), key=uniq.__getitem__)
    rank = np.empty(len(uniq), np.int64)
    rank[np.asarray(order, np.int64)] = np.arange(len(uniq), dtype=np.int64)
    for s in sources:
        s.gid = rank[s.gid]
        perm = np.argsort(s.gid, kind="stable")
        s.gid, s.rows, s.est = s.gid[perm], s.rows[perm], s.est[perm]
        s.labels = [s.labels[i] for i in perm.tolist()]
    return [uniq[i] for i in order]


def batch_bounds(est: np.ndarray, batch_samples: int) -> list[int]:
    """Cut points splitting series (with estimated sizes ``est``) into runs of about ``batch_samples``."""
    n = est.shape[0]
    cum = np.cumsum(est)
    bounds = [0]
    while bounds[-1] < n:
        start = bounds[-1]
        base = int(cum[start - 1]) if start else 0
        stop = int(np.searchsorted(cum, base + batch_samples, side="right"))
        bounds.append(min(max(stop, start + 1), n))
    return bounds


@dataclass
class _Piece:
    """Decoded samples of some series of one source: ``counts[i]`` samples of batch series ``rel[i]``."""

    rel: np.ndarray
    counts: np.ndarray
    t: np.ndarray
    v: np.ndarray
    hist: HistogramColumns | None = None


def _sorted_once(t: np.ndarray) -> np.ndarray:
    """Indices putting ``t`` in time order with each timestamp once (the earliest index wins)."""
    order = np.argsort(t, kind="stable")
    keep = np.ones(order.shape[0], dtype=bool)
    keep[1:] = t[order][1:] != t[order][:-1]
    return order[keep]


def assemble(labels: list[Labels], pieces: Sequence[_Piece]) -> SampleBatch:
    """One batch from per-source pieces: each series' runs in source order, chained as ``chain_samples`` does."""
    n = len(labels)
    if len(pieces) == 1 and pieces[0].rel.shape[0] == n and bool((pieces[0].rel == np.arange(n)).all()):
        p = pieces[0]
        return _nonempty_batch(labels, p.counts, p.t, p.v, hist=p.hist)
    if any(p.hist is not None for p in pieces):
        return _assemble_histograms(labels, pieces)
    rel, counts, dst, total = _placement(pieces)
    t = np.empty(total, np.int64)
    v = np.empty(total, np.uint64)
    at = 0
    for p in pieces:
        k = p.rel.shape[0]
        src = np.cumsum(p.counts) - p.counts
        select_kernels.copy_runs(p.t, p.v, src, dst[at : at + k], p.counts, t, v)
        at += k
    sizes, idx = _series_sizes(rel, counts, n, t)
    if idx is not None:
        t, v = t[idx], v[idx]
    return _nonempty_batch(labels, sizes, t, v)


def _placement(pieces: Sequence[_Piece]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Where each piece's runs go: (series of each run, its length, its first output sample, output size); runs
    of one series follow each other in source order."""
    rel = np.concatenate([p.rel for p in pieces])
    counts = np.concatenate([p.counts for p in pieces])
    order = np.argsort(rel, kind="stable")
    dst = np.empty(rel.shape[0], np.int64)
    dst[order] = np.cumsum(counts[order]) - counts[order]
    return rel, counts, dst, int(counts.sum())


def _assemble_histograms(labels: list[Labels], pieces: Sequence[_Piece]) -> SampleBatch:
    """``assemble`` for pieces holding native histograms: samples gathered by index, histogram part along."""
    n = len(labels)
    rel, counts, dst, total = _placement(pieces)
    src = np.cumsum(counts) - counts
    gather = np.empty(total, np.int64)  # per output sample, its index in the pieces' concatenation
    gather[np.repeat(dst - src, counts) + np.arange(total)] = np.arange(total)
    t = np.concatenate([p.t for p in pieces])[gather]
    v = np.concatenate([p.v for p in pieces])[gather]
    hist = HistogramColumns.concat([(p.hist, int(p.t.shape[0])) for p in pieces]).take(gather)
    sizes, idx = _series_sizes(rel, counts, n, t)
    if idx is not None:
        t, v, hist = t[idx], v[idx], hist.take(idx)
    return _nonempty_batch(labels, sizes, t, v, hist=hist)


def _series_sizes(rel: np.ndarray, counts: np.ndarray, n: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples per series of an assembled batch, and the sample order that sorts (and dedups) the series whose
    chained runs overlap in time; None when every series is in order already."""
    sizes = np.bincount(rel, weights=counts, minlength=n).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    chained = np.bincount(rel, weights=counts > 0, minlength=n) > 1
    fix = np.flatnonzero(chained & select_kernels.unsorted_series(t, offsets))
    if not fix.size:
        return sizes, None
    idx, sizes = _resort(t, offsets, fix)
    return sizes, idx


def _resort(t: np.ndarray, offsets: np.ndarray, fix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Series whose chained runs overlap in time sorted, equal timestamps once (the earliest run wins): the
    sample indices to take and the new series sizes."""
    idx = [np.arange(offsets[i], offsets[i + 1]) for i in range(offsets.shape[0] - 1)]
    for i in fix.tolist():
        idx[i] = offsets[i] + _sorted_once(t[offsets[i] : offsets[i + 1]])
    sizes = np.fromiter((x.shape[0] for x in idx), np.int64, len(idx))
    return np.concatenate(idx).astype(np.int64), sizes


def _nonempty_batch(labels: list[Labels], sizes: np.ndarray, t: np.ndarray, v: np.ndarray, *,
                    stale_free: bool = False, hist: HistogramColumns | None = None) -> SampleBatch:
    nonempty = np.flatnonzero(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes[nonempty])]).astype(np.int64)
    kept = labels if nonempty.shape[0] == len(labels) else [labels[i] for i in nonempty.tolist()]
    return SampleBatch(kept, np.full(len(kept), -1, np.int64), offsets, t, v, stale_free, hist)


def _raw_batches(sources: list[_Source], labels: list[Labels], mint: int, maxt: int,
                 batch_samples: int) -> Iterator[SampleBatch]:
    est = np.zeros(len(labels), np.int64)
    for s in sources:
        np.add.at(est, s.gid, s.est)
    bounds = batch_bounds(est, batch_samples)
    for g0, g1 in pairwise(bounds):
        parts = []
        for s in sources:
            a, b = (int(x) for x in np.searchsorted(s.gid, [g0, g1]))
            if b > a:
                parts.append((s, a, b))
        batch = _decode_in_place(parts, labels[g0:g1], g0, mint, maxt)
        if batch is None:
            batch = _decode_copying(parts, labels[g0:g1], g0, mint, maxt)
        if len(batch):
            yield batch


def _decode_copying(parts: Sequence[tuple[_Source, int, int]], labels: list[Labels], g0: int, mint: int,
                    maxt: int) -> SampleBatch:
    pieces = []
    for s, a, b in parts:
        counts, t, v, hist = s.block.row_samples(s.sb, s.rows[a:b], mint, maxt)
        pieces.append(_Piece(s.gid[a:b] - g0, counts, t, v, hist))
    return assemble(labels, pieces) if pieces else SampleBatch.concat([])


def _decode_in_place(parts: Sequence[tuple[_Source, int, int]], labels: list[Labels], g0: int, mint: int,
                     maxt: int) -> SampleBatch | None:
    """The batch decoded straight into its final layout (series by series, blocks in time order), or None
    when some block cannot be read that way."""
    spans = []
    for s, a, b in parts:
        sp = s.block.chunk_spans(s.sb, s.rows[a:b], mint, maxt)
        if sp is None:
            return None
        spans.append((s.gid[a:b] - g0, sp))
    n = len(labels)
    series = np.concatenate([rel[sp.row] for rel, sp in spans])
    samples = np.concatenate([sp.samples for _, sp in spans])
    order = np.argsort(series, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(samples[order])]).astype(np.int64)
    dst = np.empty(series.shape[0], np.int64)
    dst[order] = bounds[:-1]
    t = np.empty(int(bounds[-1]), np.int64)
    v = np.empty(int(bounds[-1]), np.uint64)
    at = 0
    for _, sp in spans:
        xor.decode_batch_into(sp.buf, sp.starts, sp.ends, dst[at : at + sp.row.shape[0]], t, v)
        at += sp.row.shape[0]
    kept = np.empty(series.shape[0], np.int64)
    kept[order], unsorted, stale = select_kernels.clip_chunks(t, v, bounds, series[order], n, mint, maxt)
    sizes = np.bincount(series, weights=kept, minlength=n).astype(np.int64)
    total = int(sizes.sum())
    t, v = t[:total], v[:total]
    at = 0
    runs = np.zeros(n, np.int64)  # rows (of any block) that contributed samples, per series
    for rel, sp in spans:
        k = sp.row.shape[0]
        row_kept = np.bincount(sp.row, weights=kept[at : at + k], minlength=rel.shape[0]) > 0
        runs += np.bincount(rel, weights=row_kept, minlength=n).astype(np.int64)
        at += k
    fix = np.flatnonzero((runs > 1) & unsorted)
    if fix.size:
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        idx, sizes = _resort(t, offsets, fix)
        t, v = t[idx], v[idx]
    return _nonempty_batch(labels, sizes, t, v, stale_free=stale == 0)


class BlockQuerier(Querier):
    """``Querier`` over the blocks of a catalog. Thread-safe for reads."""

    def __init__(self, catalog: BlockCatalog, *, min_time: int | None = None, max_time: int | None = None,
                 max_source_resolution_ms: int = 0, external_labels: bool = True) -> None:
        if max_source_resolution_ms < 0:
            raise ValueError("max source resolution must not be negative")
        self.catalog = catalog
        self.min_time = min_time
        self.max_time = max_time
        self.max_source_resolution_ms = max_source_resolution_ms
        self.external_labels = external_labels

    # --- plumbing --------------------------------------------------------------------------------

    def _clip(self, mint: int, maxt: int) -> tuple[int, int]:
        if self.min_time is not None:
            mint = max(mint, self.min_time)
        if self.max_time is not None:
            maxt = min(maxt, self.max_time)
        return mint, maxt

    def _ext(self, info: BlockInfo) -> Labels:
        return info.meta.external_labels if self.external_labels else labelset.EMPTY

    def _overlapping(self, mint: int, maxt: int) -> list[BlockInfo]:
        """Blocks of every resolution overlapping the range (the label APIs look at all, as a store gateway does)."""
        return [b for b in self.catalog.blocks() if b.meta.max_time > mint and b.meta.min_time <= maxt]

    # --- select ----------------------------------------------------------------------------------

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        """Consecutive batches of about ``batch_samples`` samples, decoded one batch at a time.

        Raw blocks stream; selections touching downsampled blocks are merged whole and then split.
        """
        mint, maxt = self._clip(mint, maxt)
        if mint > maxt:
            return SeriesStream()
        aggregate = aggregate_for(hints.func if hints is not None else "")
        mrw = effective_resolution(self.max_source_resolution_ms, hints)
        infos = choose_blocks(self.catalog.blocks(), mint, maxt, mrw)
        if any(info.meta.resolution > 0 for info in infos):
            merged = self._select_merged(infos, matchers, mint, maxt, aggregate)
            return SeriesStream.whole(merged, batch_samples=batch_samples)
        sources = self._plan(infos, matchers, mint, maxt)
        if not sources:
            return SeriesStream()
        labels = assign_global_ids(sources)
        for s in sources:
            s.labels = []
        return SeriesStream(_raw_batches(sources, labels, mint, maxt, batch_samples), series_bound=len(labels))

    def _select_merged(self, infos: Sequence[BlockInfo], matchers: Sequence[Matcher], mint: int, maxt: int,
                       aggregate: Aggr | str) -> SampleBatch:
        grouped = self._gather(infos, matchers, mint, maxt, aggregate)
        counter = aggregate == Aggr.COUNTER
        merged = [merge_parts(lab, parts, counter, mint, maxt) for lab, parts in grouped.items()]
        merged = [s for s in merged if s[1].shape[0]]
        merged.sort(key=lambda s: s[0])
        return SampleBatch.of_runs(merged) if merged else SampleBatch.concat([])

    def _plan(self, infos: Sequence[BlockInfo], matchers: Sequence[Matcher], mint: int, maxt: int) -> list[_Source]:
        """Index work only: per raw block (in time order) the matching series with chunks in range."""
        sources: list[_Source] = []
        for info in sorted(infos, key=lambda b: (b.meta.min_time, b.ulid)):
            ext = self._ext(info)
            ok, index_matchers = split_external(matchers, ext)
            if not ok:
                continue
            block = self.catalog.open_block(info.ulid)
            refs = block.postings(index_matchers)
            if refs.size == 0:
                continue
            raw = block.index.series_raw(refs)
            rows, nchunks = raw.rows_in_range(mint, maxt)
            if rows.size == 0:
                continue
            every = block.index.labels_of(raw)
            labels = [every[i] for i in rows.tolist()]
            if ext:
                labels = [labelset.merge(lab, ext) for lab in labels]
            sources.append(_Source(block, raw, rows, labels, nchunks * EST_SAMPLES_PER_CHUNK))
        return sources

    def _gather(self, infos: Sequence[BlockInfo], matchers: Sequence[Matcher], mint: int, maxt: int,
                aggregate: Aggr | str) -> dict[Labels, list[_Part]]:
        grouped: dict[Labels, list[_Part]] = defaultdict(list)
        for info in infos:
            ext = self._ext(info)
            ok, index_matchers = split_external(matchers, ext)
            if not ok:
                continue
            block = self.catalog.open_block(info.ulid)
            order = (-info.meta.resolution, info.meta.min_time, info.ulid)
            downsampled = info.meta.resolution > 0
            for lab, t, v, hist in read_block(block, index_matchers, mint, maxt, aggregate):
                final = labelset.merge(lab, ext) if ext else lab
                grouped[final].append(_Part(t, v, downsampled, order, hist))
        return grouped

    # --- labels ----------------------------------------------------------------------------------

    def _matching_label_sets(self, matchers: Sequence[Matcher], mint: int, maxt: int,
                             ) -> Iterator[tuple[Block, Labels, Labels | None]]:
        """Per overlapping block: (block, external labels, a matching series' labels or None when unfiltered)."""
        for info in self._overlapping(mint, maxt):
            ext = self._ext(info)
            ok, index_matchers = split_external(matchers, ext)
            if not ok:
                continue
            block = self.catalog.open_block(info.ulid)
            if not matchers:
                yield block, ext, None
                continue
            for sb in block.index.iter_series(block.postings(index_matchers)):
                rows, _ = sb.rows_in_range(mint, maxt)
                for i in rows.tolist():
                    yield block, ext, sb.labels[i]

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        mint, maxt = self._clip(mint, maxt)
        names: set[str] = set()
        for block, ext, lab in self._matching_label_sets(matchers, mint, maxt):
            names.update(block.index.label_names() if lab is None else (n for n, _ in lab))
            names.update(n for n, _ in ext)
        return LabelResult(sorted(names))

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        mint, maxt = self._clip(mint, maxt)
        values: set[str] = set()
        for block, ext, lab in self._matching_label_sets(matchers, mint, maxt):
            ext_value = labelset.get(ext, name)
            if ext_value:
                values.add(ext_value)
            elif lab is None:
                values.update(v for v in block.index.label_values(name) if v)
            else:
                value = labelset.get(lab, name)
                if value:
                    values.add(value)
        return LabelResult(sorted(values))


def bucket_querier(catalog: BlockCatalog, policy: PartialResponse, *, min_time: int | None = None,
                   max_time: int | None = None, max_source_resolution_ms: int = 0) -> Querier:
    """The blocks of ``catalog`` (filtered as the caller composed it) read under the partial-response policy:
    what ``query``, ``serve`` and the TUI read a bucket through (replicas: wrap in ``dedup.deduplicated``)."""
    from thanostools.core.partial import PartialBlockQuerier

    def make(view: BlockCatalog) -> Querier:
        return BlockQuerier(view, min_time=min_time, max_time=max_time,
                            max_source_resolution_ms=max_source_resolution_ms)

    return PartialBlockQuerier(catalog, make, policy)
