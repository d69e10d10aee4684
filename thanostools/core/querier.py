"""A ``Querier`` over a bucket's blocks, reading them the way a Thanos store gateway + querier pair does.

* blocks overlapping the range are picked per external-label set and resolution (FORMATS.md §7.8):
  raw only when the max resolution window (MRW) is 0, otherwise the coarsest resolution ≤ MRW with
  gaps filled by finer blocks; rate-like functions lower MRW to ``min(MRW, range/2)``;
* external labels (meta ``thanos.labels``) are added to series labels, win over series labels of the
  same name, and can be matched by matchers;
* series with equal final labels from several blocks are chained (equal timestamps once);
* downsampled blocks are read back through the aggregate chosen by ``hints.func`` (§7.8 table);
* ``dedup=True`` merges replicas (series equal after dropping ``replica_labels``) with the penalty
  algorithm (§8.6).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core import labels as labelset
from thanostools.core.chunkenc.aggr import Aggr, counter_reset_series
from thanostools.core.dedup import COUNTER_FUNCS, dedup_replicas
from thanostools.core.errors import CorruptBlockError
from thanostools.core.inspect import BlockInfo
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, matches_all
from thanostools.core.series import SampleBatch, SelectHints, SelectResult
from thanostools.core.storage import chain_samples

if TYPE_CHECKING:
    from thanostools.core.engine import Engine
    from thanostools.core.tsdb.block import Block

RES_1H = 3_600_000
RES_5M = 300_000
RESOLUTIONS = (RES_1H, RES_5M, 0)  # coarsest first
# Functions for which the querier lowers MRW to half the range so every window holds two samples.
RANGE_LOWERING_FUNCS = frozenset({
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "holt_winters",
    "double_exponential_smoothing",
})
# Functions read back through the counter aggregate (§7.6 iterator).
COUNTER_AGGR_FUNCS = frozenset({"rate", "increase", "irate", "resets", "xrate", "xincrease"})

AVG = "avg"  # sum / count per window (the default read-back)


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


def drop_superseded(infos: Sequence[BlockInfo]) -> list[BlockInfo]:
    """Ignore blocks whose sources are all in a bigger kept block (compaction leftovers, §8.7)."""
    kept: list[BlockInfo] = []
    kept_sources: list[set[str]] = []
    for info in sorted(infos, key=lambda b: (-len(b.meta.sources), b.ulid)):
        sources = set(info.meta.sources) or {info.ulid}
        if any(sources <= k for k in kept_sources):
            continue
        kept.append(info)
        kept_sources.append(sources)
    return sorted(kept, key=lambda b: (b.meta.min_time, b.ulid))


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
    """Blocks to read for [mint, maxt] at max resolution window ``mrw``, per external-label set."""
    groups: dict[Labels, dict[int, list[BlockInfo]]] = defaultdict(lambda: defaultdict(list))
    for info in infos:
        groups[info.meta.external_labels][info.meta.resolution].append(info)
    levels = [r for r in RESOLUTIONS if r <= mrw]
    chosen: list[BlockInfo] = []
    for by_res in groups.values():
        for res in list(by_res):
            by_res[res] = drop_superseded(by_res[res])
        chosen += _fill(by_res, levels, mint, maxt)
    return chosen


# --- reading one block -----------------------------------------------------------------------------


@dataclass
class _Part:
    """One block's samples of one series."""

    t: np.ndarray
    v: np.ndarray
    downsampled: bool
    order: tuple[int, int, str]


def split_external(matchers: Sequence[Matcher], ext: Labels) -> tuple[bool, list[Matcher]]:
    """(whether the block's external labels pass the matchers on their names, the matchers left for the index)."""
    names = {n for n, _ in ext}
    ext_matchers = [m for m in matchers if m.name in names]
    rest = [m for m in matchers if m.name not in names]
    return matches_all(ext_matchers, ext), rest


def _iter_series(batches: Iterator[SampleBatch]) -> Iterator[tuple[Labels, np.ndarray, np.ndarray]]:
    for b in batches:
        for i in range(len(b)):
            yield b.series(i)


def _read_average(block: Block, matchers: Sequence[Matcher], mint: int, maxt: int,
                  ) -> Iterator[tuple[Labels, np.ndarray, np.ndarray]]:
    """Artificial average samples ``sum / count`` at every window of a downsampled block."""
    refs = block.postings(matchers)
    for sb in block.index.iter_series(refs):
        sums = block.samples(sb, mint, maxt, aggregate=Aggr.SUM)
        counts = block.samples(sb, mint, maxt, aggregate=Aggr.COUNT)
        for i in range(len(sums)):
            lab, ts, vs = sums.series(i)
            _, tc, vc = counts.series(i)
            if not np.array_equal(ts, tc):
                raise CorruptBlockError(f"series {labelset.format_labels(lab)}: sum and count timestamps differ",
                                        block=block.ulid)
            avg = vs.view(np.float64) / vc.view(np.float64)
            yield lab, ts, avg.view(np.uint64)


def read_block(block: Block, matchers: Sequence[Matcher], mint: int, maxt: int, aggregate: Aggr | str,
               ) -> Iterator[tuple[Labels, np.ndarray, np.ndarray]]:
    """A block's matching series: raw samples, or the chosen aggregate of a downsampled block."""
    res = block.meta.resolution
    if res == 0:
        return _iter_series(block.select(matchers, mint, maxt))
    if aggregate == AVG:
        return _read_average(block, matchers, mint, maxt)
    assert isinstance(aggregate, Aggr)
    if aggregate == Aggr.COUNTER:
        # A chunk's true first raw value sits up to one window before its first window (§7.4): keep it.
        mint = mint - res if mint >= -(2**63) + res else mint
    return _iter_series(block.select(matchers, mint, maxt, aggregate=aggregate))


# --- merging ---------------------------------------------------------------------------------------


def merge_parts(parts: list[_Part], counter: bool, mint: int, maxt: int) -> tuple[np.ndarray, np.ndarray]:
    """One series' samples from its blocks: chained, or (counters over downsampled data) §7.6-adjusted."""
    parts.sort(key=lambda p: p.order)
    if counter and any(p.downsampled for p in parts):
        # Equal timestamps must survive here: they carry the chunks' true last raw values.
        t = np.concatenate([p.t for p in parts])
        v = np.concatenate([p.v for p in parts])
        order = np.argsort(t, kind="stable")
        ct, cv = counter_reset_series(t[order], v[order])
        keep = (ct >= mint) & (ct <= maxt)
        return ct[keep], cv[keep].view(np.uint64)
    return chain_samples([(p.t, p.v) for p in parts])


def _batch(series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> SampleBatch:
    if not series:
        return SampleBatch.concat([])
    offsets = np.concatenate([[0], np.cumsum([s[1].shape[0] for s in series])]).astype(np.int64)
    return SampleBatch([s[0] for s in series], np.full(len(series), -1, np.int64), offsets,
                       np.concatenate([s[1] for s in series]).astype(np.int64),
                       np.concatenate([s[2] for s in series]).astype(np.uint64))


class BlockQuerier:
    """``Querier`` over all blocks of an engine's bucket. Thread-safe for reads."""

    def __init__(self, engine: Engine, *, min_time: int | None = None, max_time: int | None = None,
                 replica_labels: Sequence[str] = (), dedup: bool = False, max_source_resolution_ms: int = 0,
                 external_labels: bool = True) -> None:
        if max_source_resolution_ms < 0:
            raise ValueError("max source resolution must not be negative")
        self.engine = engine
        self.min_time = min_time
        self.max_time = max_time
        self.replica_labels = tuple(replica_labels)
        self.dedup = dedup and bool(self.replica_labels)
        self.max_source_resolution_ms = max_source_resolution_ms
        self.external_labels = external_labels
        self._blocks: dict[str, Block] = {}
        self._lock = threading.Lock()

    # --- plumbing --------------------------------------------------------------------------------

    def _clip(self, mint: int, maxt: int) -> tuple[int, int]:
        if self.min_time is not None:
            mint = max(mint, self.min_time)
        if self.max_time is not None:
            maxt = min(maxt, self.max_time)
        return mint, maxt

    def _open(self, ulid: str) -> Block:
        with self._lock:
            block = self._blocks.get(ulid)
            if block is None:
                block = self._blocks[ulid] = self.engine.open_block(ulid)
            return block

    def _ext(self, info: BlockInfo) -> Labels:
        return info.meta.external_labels if self.external_labels else labelset.EMPTY

    def _overlapping(self, mint: int, maxt: int) -> list[BlockInfo]:
        """Blocks of every resolution overlapping the range (the label APIs look at all, as a store gateway does)."""
        return [b for b in self.engine.blocks() if b.meta.max_time > mint and b.meta.min_time <= maxt]

    # --- select ----------------------------------------------------------------------------------

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int,
               hints: SelectHints | None = None) -> SelectResult:
        mint, maxt = self._clip(mint, maxt)
        if mint > maxt:
            return SelectResult(SampleBatch.concat([]))
        func = hints.func if hints is not None else ""
        aggregate = aggregate_for(func)
        mrw = effective_resolution(self.max_source_resolution_ms, hints)
        infos = choose_blocks(self.engine.blocks(), mint, maxt, mrw)
        grouped = self._gather(infos, matchers, mint, maxt, aggregate)
        counter = aggregate == Aggr.COUNTER
        merged = [(lab, *merge_parts(parts, counter, mint, maxt)) for lab, parts in grouped.items()]
        merged = [s for s in merged if s[1].shape[0]]
        if self.dedup:
            merged = self._deduplicate(merged, func in COUNTER_FUNCS)
        merged.sort(key=lambda s: s[0])
        return SelectResult(_batch(merged), self._scan_warnings())

    def _scan_warnings(self) -> list[str]:
        return [f"block {ulid} skipped: {err}" for ulid, err in sorted(self.engine.scan().broken.items())]

    def _gather(self, infos: Sequence[BlockInfo], matchers: Sequence[Matcher], mint: int, maxt: int,
                aggregate: Aggr | str) -> dict[Labels, list[_Part]]:
        grouped: dict[Labels, list[_Part]] = defaultdict(list)
        for info in infos:
            ext = self._ext(info)
            ok, index_matchers = split_external(matchers, ext)
            if not ok:
                continue
            block = self._open(info.ulid)
            order = (-info.meta.resolution, info.meta.min_time, info.ulid)
            downsampled = info.meta.resolution > 0
            for lab, t, v in read_block(block, index_matchers, mint, maxt, aggregate):
                final = labelset.merge(lab, ext) if ext else lab
                grouped[final].append(_Part(t, v, downsampled, order))
        return grouped

    def _deduplicate(self, series: list[tuple[Labels, np.ndarray, np.ndarray]], counter: bool,
                     ) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
        groups: dict[Labels, list[tuple[Labels, np.ndarray, np.ndarray]]] = defaultdict(list)
        for s in series:
            groups[labelset.without(s[0], self.replica_labels)].append(s)
        out = []
        for lab, replicas in groups.items():
            replicas.sort(key=lambda s: s[0])
            t, v = dedup_replicas([(s[1], s[2]) for s in replicas], counter=counter)
            out.append((lab, t, v))
        return out

    # --- labels ----------------------------------------------------------------------------------

    def _matching_label_sets(self, matchers: Sequence[Matcher], mint: int, maxt: int,
                             ) -> Iterator[tuple[Block, Labels, Labels | None]]:
        """Per overlapping block: (block, external labels, a matching series' labels or None when unfiltered)."""
        for info in self._overlapping(mint, maxt):
            ext = self._ext(info)
            ok, index_matchers = split_external(matchers, ext)
            if not ok:
                continue
            block = self._open(info.ulid)
            if not matchers:
                yield block, ext, None
                continue
            for sb in block.index.iter_series(block.postings(index_matchers)):
                live = np.concatenate([[0], np.cumsum((sb.chunk_maxt >= mint) & (sb.chunk_mint <= maxt))])
                counts = live[sb.chunk_offsets[1:]] - live[sb.chunk_offsets[:-1]]
                for i in np.flatnonzero(counts).tolist():
                    yield block, ext, sb.labels[i]

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        mint, maxt = self._clip(mint, maxt)
        names: set[str] = set()
        for block, ext, lab in self._matching_label_sets(matchers, mint, maxt):
            names.update(block.index.label_names() if lab is None else (n for n, _ in lab))
            names.update(n for n, _ in ext)
        if self.dedup:
            names.difference_update(self.replica_labels)
        return sorted(names)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        mint, maxt = self._clip(mint, maxt)
        if self.dedup and name in self.replica_labels:
            return []
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
        return sorted(values)
