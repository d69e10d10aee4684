"""Block analysis with the same figures as ``promtool tsdb analyze`` (churn, cardinality, chunk fullness).

Everything is computed on symbol positions with numpy: label strings are only built for the
entries that make it into the top-N lists.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from thanostools.core.chunkenc import histogram
from thanostools.core.labels import METRIC_NAME
from thanostools.core.matchers import Matcher
from thanostools.core.tsdb.block import HISTOGRAM_ENCODINGS, Block
from thanostools.core.tsdb.index import IndexReader, RawSeries

Ranked = list[tuple[int, str]]

MAX_SAMPLES_PER_CHUNK = 120
FULLNESS_BUCKETS = 10


@dataclass
class AnalyzeReport:
    ulid: str
    duration_ms: int
    series: int
    label_names: int
    postings: int
    postings_entries: int
    churn_pairs: Ranked
    churn_names: Ranked
    common_pairs: Ranked
    value_length: Ranked
    cardinality_labels: Ranked
    cardinality_metrics: Ranked
    fullness: list[int] | None = None
    chunk_sizes: dict[str, int] = field(default_factory=dict)
    # native histograms (extended only; empty when the block holds none): series with histogram chunks, those
    # chunks, their samples but stale markers, and the buckets (empty ones of the chunk layout included) per
    # such sample as min/p50/p90/p99/max
    histograms: dict[str, int] = field(default_factory=dict)

    def to_dict(self, limit: int) -> dict[str, object]:
        def ranked(r: Ranked) -> list[dict[str, object]]:
            return [{"name": k, "value": v} for v, k in r[:limit]]

        out: dict[str, object] = {
            "ulid": self.ulid, "duration_ms": self.duration_ms, "series": self.series,
            "label_names": self.label_names, "postings": self.postings, "postings_entries": self.postings_entries,
            "label_pairs_churn": ranked(self.churn_pairs), "label_names_churn": ranked(self.churn_names),
            "common_label_pairs": ranked(self.common_pairs), "label_value_length": ranked(self.value_length),
            "cardinality_labels": ranked(self.cardinality_labels),
            "cardinality_metric_names": ranked(self.cardinality_metrics),
        }
        if self.fullness is not None:
            out["chunk_fullness"] = {f"{(i + 1) * 10}%": n for i, n in enumerate(self.fullness)}
            out["chunk_sizes"] = self.chunk_sizes
            out["native_histograms"] = self.histograms
        return out


def top(values: np.ndarray, key: Callable[[int], str], limit: int) -> Ranked:
    """The ``limit`` largest values with their keys; ties ordered by key (promtool's order is unstable)."""
    n = int(values.shape[0])
    if n == 0 or limit <= 0:
        return []
    if n > limit:
        cutoff = np.partition(values, n - limit)[n - limit]
        idx = np.flatnonzero(values >= cutoff)
    else:
        idx = np.arange(n)
    ranked = sorted(((int(values[i]), key(int(i))) for i in idx.tolist()), key=lambda p: (-p[0], p[1]))
    return ranked[:limit]


@dataclass
class _Pairs:
    """All label pairs of the analysed series, as symbol positions, with per-pair series uncovered time."""

    names: np.ndarray
    values: np.ndarray
    uncovered: np.ndarray  # uint64, Go's wrapping arithmetic


def _collect(index: IndexReader, refs: np.ndarray, span: int) -> _Pairs:
    names, values, unc = [], [], []
    for raw in index.iter_series_raw(refs):
        names.append(raw.label_names)
        values.append(raw.label_values)
        unc.append(np.repeat(_uncovered(raw, span), np.diff(raw.label_offsets)))
    if not names:
        return _Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
    return _Pairs(np.concatenate(names), np.concatenate(values), np.concatenate(unc))


def _uncovered(raw: RawSeries, span: int) -> np.ndarray:
    """Block span minus each series' covered span (first chunk mint to last chunk maxt), in uint64."""
    n = len(raw)
    has = np.diff(raw.chunk_offsets) > 0
    covered = np.zeros(n, dtype=np.int64)
    first = raw.chunk_mint[raw.chunk_offsets[:-1][has]]
    last = raw.chunk_maxt[raw.chunk_offsets[1:][has] - 1]
    covered[has] = last - first
    with np.errstate(over="ignore"):
        return np.uint64(span % (1 << 64)) - covered.astype(np.uint64)


def _grouped_sum(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.zeros(uniq.shape[0], dtype=np.uint64)
    np.add.at(sums, inverse, weights)
    return uniq, sums, np.bincount(inverse, minlength=uniq.shape[0])


def _churn(sums: np.ndarray, span: int) -> np.ndarray:
    if span == 0:
        return np.zeros(sums.shape[0], np.int64)
    return (sums.astype(np.float64) / float(span)).astype(np.uint64).astype(np.int64)


def analyze_block(block: Block, *, matchers: Sequence[Matcher] = (), extended: bool = False,
                  limit: int = 20) -> AnalyzeReport:
    meta, index = block.meta, block.index
    span = meta.max_time - meta.min_time
    syms = index.symbols
    nsym = max(len(syms), 1)
    refs = block.postings(matchers)
    pairs = _collect(index, refs, span)

    pair_keys, pair_unc, pair_cnt = _grouped_sum(pairs.names * nsym + pairs.values, pairs.uncovered)
    name_keys, name_unc, _ = _grouped_sum(pairs.names, pairs.uncovered)

    def pair_str(i: int) -> str:
        k = int(pair_keys[i])
        return f"{syms[k // nsym]}={syms[k % nsym]}"

    value_names, value_counts, value_lengths = _label_values(index, pair_keys, nsym, bool(matchers))
    metric_pos = bisect_left(syms, METRIC_NAME)
    is_metric = (pair_keys // nsym) == metric_pos if metric_pos < len(syms) and syms[metric_pos] == METRIC_NAME \
        else np.zeros(pair_keys.shape[0], bool)
    metric_idx = np.flatnonzero(is_metric)

    report = AnalyzeReport(
        ulid=meta.ulid, duration_ms=span, series=len(refs) if matchers else meta.stats.num_series,
        label_names=len(value_names), postings=int(pair_keys.shape[0]), postings_entries=int(pairs.names.shape[0]),
        churn_pairs=top(_churn(pair_unc, span), pair_str, limit),
        churn_names=top(_churn(name_unc, span), lambda i: syms[int(name_keys[i])], limit),
        common_pairs=top(pair_cnt, pair_str, limit),
        value_length=top(value_lengths, lambda i: value_names[i], limit),
        cardinality_labels=top(value_counts, lambda i: value_names[i], limit),
        cardinality_metrics=top(pair_cnt[metric_idx], lambda i: syms[int(pair_keys[metric_idx[i]]) % nsym], limit),
    )
    if extended:
        report.fullness, report.chunk_sizes, report.histograms = _chunk_stats(block, refs)
    return report


def _label_values(index: IndexReader, pair_keys: np.ndarray, nsym: int,
                  from_series: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Label names with their number of values and the summed byte length of those values."""
    if not from_series:
        names = index.label_names()
        values = [index.label_values(n) for n in names]
        return (names, np.array([len(v) for v in values], np.int64),
                np.array([sum(len(x.encode()) for x in v) for v in values], np.int64))
    syms = index.symbols
    sym_len = np.array([len(s.encode()) for s in syms], np.int64)
    name_pos = pair_keys // nsym
    uniq, inverse = np.unique(name_pos, return_inverse=True)
    counts = np.bincount(inverse, minlength=uniq.shape[0])
    lengths = np.bincount(inverse, weights=sym_len[pair_keys % nsym], minlength=uniq.shape[0]).astype(np.int64)
    return [syms[int(i)] for i in uniq.tolist()], counts, lengths


def _chunk_stats(block: Block, refs: np.ndarray) -> tuple[list[int], dict[str, int], dict[str, int]]:
    """Histogram of samples per chunk (capped at 120, in tenths), payload size statistics and native-histogram
    figures (histogram chunks are decoded, one call per kind and batch of series)."""
    fullness = np.zeros(FULLNESS_BUCKETS, dtype=np.int64)
    sizes: list[np.ndarray] = []
    hist_series = hist_chunks = 0
    buckets: list[np.ndarray] = []
    for raw in block.index.iter_series_raw(refs):
        heads = block.chunks.headers(raw.chunk_ref)
        capped = np.minimum(heads.num_samples, MAX_SAMPLES_PER_CHUNK)
        bins = np.ceil(FULLNESS_BUCKETS * capped / MAX_SAMPLES_PER_CHUNK).astype(np.int64) - 1
        fullness += np.bincount(bins.clip(0, FULLNESS_BUCKETS - 1), minlength=FULLNESS_BUCKETS)
        sizes.append(heads.lengths)
        is_hist = np.isin(heads.encodings, HISTOGRAM_ENCODINGS)
        if bool(is_hist.any()):
            chunk_series = np.repeat(np.arange(raw.chunk_offsets.shape[0] - 1), np.diff(raw.chunk_offsets))
            hist_series += int(np.unique(chunk_series[is_hist]).shape[0])
            hist_chunks += int(is_hist.sum())
            buckets.append(_buckets_per_sample(block, raw.chunk_ref[is_hist]))
    summary = _size_summary(np.concatenate(sizes) if sizes else np.zeros(0, np.int64))
    if not hist_chunks:
        return fullness.tolist(), summary, {}
    per_sample = np.concatenate(buckets)
    hist = {"series": hist_series, "chunks": hist_chunks, "samples": int(per_sample.shape[0])}
    if per_sample.size:
        q = np.percentile(per_sample, [50, 90, 99]).astype(np.int64).tolist()
        hist.update({"buckets_min": int(per_sample.min()), "buckets_p50": q[0], "buckets_p90": q[1],
                     "buckets_p99": q[2], "buckets_max": int(per_sample.max())})
    return fullness.tolist(), summary, hist


def _buckets_per_sample(block: Block, refs: np.ndarray) -> np.ndarray:
    """Buckets (both sides) of every non-stale sample of the histogram chunks ``refs``."""
    batch = block.chunks.read(refs)
    out = []
    for part in histogram.decode_by_kind(batch.buf, batch.starts, batch.ends, batch.encodings)[:2]:
        lay = part.layouts
        out.append((lay.n_pos + lay.n_neg)[part.layout][~part.stale])
    return np.concatenate(out).astype(np.int64)


def _size_summary(nbytes: np.ndarray) -> dict[str, int]:
    if nbytes.size == 0:
        return {}
    q = np.percentile(nbytes, [50, 90, 99]).astype(np.int64).tolist()
    return {"count": int(nbytes.size), "total_bytes": int(nbytes.sum()), "min": int(nbytes.min()), "p50": q[0],
            "p90": q[1], "p99": q[2], "max": int(nbytes.max())}
