"""Block analysis with the same figures as ``promtool tsdb analyze`` (churn, cardinality, chunk fullness)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from thanostools.core.chunkenc.aggr import Aggr, aggr_spans
from thanostools.core.labels import METRIC_NAME
from thanostools.core.matchers import Matcher
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_AGGR

Ranked = list[tuple[int, str]]

MAX_SAMPLES_PER_CHUNK = 120
FULLNESS_BUCKETS = 10
_U64 = 1 << 64


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
        return out


def _rank(counter: dict[str, int]) -> Ranked:
    # promtool sorts by value only (unstable); we break ties by key so output is deterministic.
    return sorted(((v, k) for k, v in counter.items()), key=lambda p: (-p[0], p[1]))


def analyze_block(block: Block, *, matchers: Sequence[Matcher] = (), extended: bool = False) -> AnalyzeReport:
    meta = block.meta
    span = meta.max_time - meta.min_time
    refs = block.postings(matchers)
    pair_uncovered: Counter[str] = Counter()
    name_uncovered: Counter[str] = Counter()
    pair_count: Counter[str] = Counter()
    values_seen: dict[str, set[str]] = {}
    metric_series: Counter[str] = Counter()
    entries = 0
    fullness = np.zeros(FULLNESS_BUCKETS, dtype=np.int64) if extended else None
    sizes: list[np.ndarray] = []
    for sb in block.index.iter_series(refs):
        first = sb.chunk_mint[sb.chunk_offsets[:-1].clip(max=max(len(sb.chunk_mint) - 1, 0))]
        last = sb.chunk_maxt[(sb.chunk_offsets[1:] - 1).clip(min=0)]
        covered = (last - first).tolist()
        for labels, cov in zip(sb.labels, covered, strict=True):
            # Go computes this in uint64, wrapping on odd ranges; keep the same arithmetic.
            uncovered = (span - cov) % _U64
            for name, value in labels:
                key = f"{name}={value}"
                name_uncovered[name] += uncovered
                pair_uncovered[key] += uncovered
                pair_count[key] += 1
                values_seen.setdefault(name, set()).add(value)
                if name == METRIC_NAME:
                    metric_series[value] += 1
            entries += len(labels)
        if fullness is not None:
            counts, nbytes = _chunk_sample_counts(block, sb.chunk_ref)
            capped = np.minimum(counts, MAX_SAMPLES_PER_CHUNK)
            buckets = np.ceil(FULLNESS_BUCKETS * capped / MAX_SAMPLES_PER_CHUNK).astype(np.int64) - 1
            fullness += np.bincount(buckets.clip(0, FULLNESS_BUCKETS - 1), minlength=FULLNESS_BUCKETS)
            sizes.append(nbytes)

    def churn(c: Counter[str]) -> dict[str, int]:
        return {k: int(float(v) / float(span)) if span else 0 for k, v in c.items()}

    names = sorted(values_seen) if matchers else block.index.label_names()
    values = {n: sorted(values_seen.get(n, ())) for n in names} if matchers else {
        n: block.index.label_values(n) for n in names}
    report = AnalyzeReport(
        ulid=meta.ulid, duration_ms=span, series=len(refs) if matchers else meta.stats.num_series,
        label_names=len(names), postings=len(pair_uncovered), postings_entries=entries,
        churn_pairs=_rank(churn(pair_uncovered)), churn_names=_rank(churn(name_uncovered)),
        common_pairs=_rank(dict(pair_count)),
        value_length=_rank({n: sum(len(v.encode()) for v in values[n]) for n in names}),
        cardinality_labels=_rank({n: len(values[n]) for n in names}),
        cardinality_metrics=_rank(dict(metric_series)),
    )
    if fullness is not None:
        report.fullness = fullness.tolist()
        report.chunk_sizes = _size_summary(np.concatenate(sizes) if sizes else np.zeros(0, np.int64))
    return report


def _chunk_sample_counts(block: Block, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples per chunk (AggrChunks count their count sub-chunk) and payload sizes in bytes."""
    batch = block.chunks.read(refs)
    starts, ends = batch.starts, batch.ends
    aggr = batch.encodings == ENC_AGGR
    if bool(aggr.any()):
        s, _e, _enc = aggr_spans(batch.buf, batch.starts[aggr], batch.ends[aggr], Aggr.COUNT)
        starts = starts.copy()
        starts[aggr] = s
    ok = ends - starts >= 2
    counts = np.zeros(starts.shape[0], np.int64)
    hi = batch.buf[starts[ok]].astype(np.int64)
    counts[ok] = (hi << 8) | batch.buf[starts[ok] + 1]
    return counts, batch.ends - batch.starts


def _size_summary(nbytes: np.ndarray) -> dict[str, int]:
    if nbytes.size == 0:
        return {}
    q = np.percentile(nbytes, [50, 90, 99]).astype(np.int64).tolist()
    return {"count": int(nbytes.size), "total_bytes": int(nbytes.sum()), "min": int(nbytes.min()), "p50": q[0],
            "p90": q[1], "p99": q[2], "max": int(nbytes.max())}
