"""The text form of `bucket analyze`, line for line what `promtool tsdb analyze` prints."""

from __future__ import annotations

from thanostools.core.analyze import AnalyzeReport, Ranked
from thanostools.core.timeutil import go_duration


def _ranked(title: str, items: Ranked, limit: int) -> list[str]:
    return ["", f"{title}:", *(f"{v} {k}" for v, k in items[:limit])]


def render_analyze(r: AnalyzeReport, limit: int) -> str:
    lines = [
        f"Block ID: {r.ulid}",
        f"Duration: {go_duration(r.duration_ms)}",
        f"Series: {r.series}",
        f"Label names: {r.label_names}",
        f"Postings (unique label pairs): {r.postings}",
        f"Postings entries (total label pairs): {r.postings_entries}",
    ]
    lines += _ranked("Label pairs most involved in churning", r.churn_pairs, limit)
    lines += _ranked("Label names most involved in churning", r.churn_names, limit)
    lines += _ranked("Most common label pairs", r.common_pairs, limit)
    lines += _ranked("Label names with highest cumulative label value length", r.value_length, limit)
    lines += _ranked("Highest cardinality labels", r.cardinality_labels, limit)
    lines += _ranked("Highest cardinality metric names", r.cardinality_metrics, limit)
    if r.fullness is not None:
        total = sum(r.fullness)
        lines += ["", "Compaction analysis:", "Fullness: Amount of samples in chunks (100% is 120 samples)"]
        for i, count in enumerate(r.fullness):
            pct = 100 * count // total if total else 0
            lines.append(f"{(i + 1) * 10:7d}%: " + "#" * pct)
        if r.chunk_sizes:
            s = r.chunk_sizes
            lines += ["", "Chunk sizes (bytes, payload):",
                      f"count {s['count']} total {s['total_bytes']} min {s['min']} p50 {s['p50']} "
                      f"p90 {s['p90']} p99 {s['p99']} max {s['max']}"]
        if r.histograms:
            h = r.histograms
            lines += ["", f"Native histograms: {h['series']} series, {h['chunks']} chunks, {h['samples']} samples"]
            if "buckets_max" in h:
                lines.append(f"Buckets per histogram sample: min {h['buckets_min']} p50 {h['buckets_p50']} "
                             f"p90 {h['buckets_p90']} p99 {h['buckets_p99']} max {h['buckets_max']}")
    return "\n".join(lines) + "\n"
