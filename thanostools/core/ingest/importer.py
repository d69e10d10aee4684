"""Turning samples into uploaded blocks: text exposition imports and synthetic data."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from thanostools.core.blockio import upload_block, work_dir
from thanostools.core.errors import ConfigError, FormatError, NotFoundError
from thanostools.core.ingest.blockset import DEFAULT_BLOCK_DURATION, BlockSetWriter
from thanostools.core.ingest.dumpjson import looks_like_dump_json, parse_dump_json
from thanostools.core.ingest.generate import GenerateSpec, generate_batches
from thanostools.core.ingest.textparse import ParsedSamples, parse_exposition
from thanostools.core.labels import Labels
from thanostools.core.localfs import WorkDir
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.series import SampleBatch
from thanostools.core.tsdb.meta import BlockMeta

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _upload_all(work: WorkDir, metas: Sequence[BlockMeta], bucket: Bucket, source: str) -> list[BlockMeta]:
    return [upload_block(os.path.join(work.path, m.ulid), bucket, source=source, private=True, work=work)
            for m in metas]


def read_inputs(paths: Sequence[str], fmt: str) -> ParsedSamples:
    """Parse every input file and merge them into one set of samples."""
    parsed = [parse_exposition(_read(path), fmt, source=path) for path in paths]
    return _concat(parsed)


def _concat(parts: Sequence[ParsedSamples]) -> ParsedSamples:
    if len(parts) == 1:
        return parts[0]
    ids: dict[Labels, int] = {}
    idx, ts, vs = [], [], []
    for p in parts:
        remap = np.array([ids.setdefault(lab, len(ids)) for lab in p.series], dtype=np.int32)
        idx.append(remap[p.series_index] if remap.size else p.series_index)
        ts.append(p.t)
        vs.append(p.v)
    return ParsedSamples(list(ids), np.concatenate(idx), np.concatenate(ts), np.concatenate(vs))


def sort_samples(parsed: ParsedSamples) -> tuple[list[Labels], np.ndarray, np.ndarray, np.ndarray, int]:
    """Series in label order, samples by time, duplicates dropped (first wins, as promtool keeps the first).

    Returns (labels, t, v, offsets, conflicting duplicates).
    """
    order = sorted(range(len(parsed.series)), key=parsed.series.__getitem__)
    rank = np.empty(len(order), dtype=np.int64)
    rank[np.array(order, dtype=np.int64)] = np.arange(len(order))
    sample_rank = rank[parsed.series_index] if len(order) else np.zeros(0, np.int64)
    perm = np.lexsort((parsed.t, sample_rank))
    s, t, v = sample_rank[perm], parsed.t[perm], parsed.v[perm]
    dup = np.zeros(t.shape[0], dtype=bool)
    dup[1:] = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    conflicts = int(np.count_nonzero(dup[1:] & (v[1:] != v[:-1]))) if t.shape[0] > 1 else 0
    keep = ~dup
    s, t, v = s[keep], t[keep], v[keep]
    counts = np.bincount(s, minlength=len(order))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return [parsed.series[i] for i in order], t, v, offsets, conflicts


def import_files(
    bucket: Bucket,
    paths: Sequence[str],
    *,
    fmt: str = "auto",
    external_labels: Mapping[str, str] | None = None,
    block_duration: int = DEFAULT_BLOCK_DURATION,
    tmp_dir: str | None = None,
) -> list[BlockMeta]:
    """Parse exposition files (or ``bucket dump -o json`` output, native histograms included) and upload one
    block per aligned ``block_duration`` range."""
    batch: Batch | SampleBatch
    if _is_dump_json(paths, fmt):
        batch, dropped = parse_dump_json([(_read(p), p) for p in paths])
        if dropped:
            log.warning("dropped samples with duplicate timestamps", extra={"kv": {"count": dropped}})
        empty = len(batch) == 0
    else:
        labels, t, v, offsets, conflicts = sort_samples(read_inputs(paths, fmt))
        if conflicts:
            log.warning("dropped samples with duplicate timestamps and different values",
                        extra={"kv": {"count": conflicts}})
        batch, empty = (labels, t, v, offsets), not labels
    if empty:
        raise FormatError("no samples found in the input")
    return write_and_upload(bucket, [batch], external_labels=external_labels,
                            block_duration=block_duration, tmp_dir=tmp_dir, source="bucket.upload")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None


def _read_head(path: str, size: int = 4096) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None


def _is_dump_json(paths: Sequence[str], fmt: str) -> bool:
    """``json`` asked for, or (auto) every input is a JSON dump; JSON and text inputs do not mix."""
    if fmt != "auto":
        return fmt == "json"
    json_inputs = [p for p in paths if looks_like_dump_json(_read_head(p))]
    if json_inputs and len(json_inputs) != len(paths):
        raise ConfigError(f"{json_inputs[0]} is a JSON dump but other inputs are text: import them separately")
    return bool(json_inputs)


Batch = tuple[Sequence[Labels], np.ndarray, np.ndarray, np.ndarray]


def write_and_upload(
    bucket: Bucket, batches: Iterable[Batch | SampleBatch], *, external_labels: Mapping[str, str] | None,
    block_duration: int, tmp_dir: str | None, source: str, aligned_ranges: bool = False,
) -> list[BlockMeta]:
    with work_dir(bucket, "import", tmp_dir) as work:
        writer = BlockSetWriter(work.path, block_duration=block_duration, external_labels=external_labels,
                                source=source, aligned_ranges=aligned_ranges)
        try:
            for batch in batches:
                if isinstance(batch, SampleBatch):
                    writer.add_sample_batch(batch)
                else:
                    writer.add_batch(*batch)
        except BaseException:
            writer.abort()
            raise
        metas = writer.finish()
        return _upload_all(work, metas, bucket, source)


def generate_blocks(
    bucket: Bucket,
    spec: GenerateSpec,
    *,
    external_labels: Mapping[str, str] | None = None,
    replica_label: str = "replica",
    block_duration: int = DEFAULT_BLOCK_DURATION,
    tmp_dir: str | None = None,
    progress: Progress | None = None,
) -> list[BlockMeta]:
    """Generate synthetic series (one stream per replica) and upload them as blocks."""
    out: list[BlockMeta] = []
    for replica in range(spec.replicas):
        labels = dict(external_labels or {})
        if spec.replicas > 1:
            labels[replica_label] = str(replica)
        if progress:
            progress(f"replica {replica}")
        out.extend(write_and_upload(bucket, generate_batches(spec, replica), external_labels=labels,
                                    block_duration=block_duration, tmp_dir=tmp_dir, source="bucket.upload",
                                    aligned_ranges=True))
    return out
