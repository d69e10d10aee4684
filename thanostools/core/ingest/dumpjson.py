"""Reading back the ``bucket dump -o json`` form (``render/dumpfmt.json_documents``): floats and native histograms,
losslessly, as one label-sorted :class:`SampleBatch` ready for ``BlockWriter.add_sample_batch``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thanostools.core.chunkenc.histogram import HistogramSample, build_batch
from thanostools.core.errors import FormatError
from thanostools.core.labels import Labels, from_dict
from thanostools.core.series import (
    KIND_FLOAT,
    KIND_FLOAT_HISTOGRAM,
    KIND_INT_HISTOGRAM,
    HistogramColumns,
    SampleBatch,
)

HISTOGRAM_KINDS = {"int": KIND_INT_HISTOGRAM, "float": KIND_FLOAT_HISTOGRAM}


def looks_like_dump_json(data: bytes) -> bool:
    """The JSON dump is an array; exposition text never starts with ``[``."""
    return data.lstrip()[:1] == b"["


@dataclass
class _Rows:
    """Samples of one kind in input order: (series id, t) keys and what each one becomes."""

    series: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)  # position in the input, over all kinds
    t: list[int] = field(default_factory=list)
    floats: list[float] = field(default_factory=list)
    hists: list[HistogramSample] = field(default_factory=list)


def parse_dump_json(inputs: Sequence[tuple[bytes, str]]) -> tuple[SampleBatch, int]:
    """The samples of JSON dumps (``(data, source name)`` each), series in label order and samples by time (a
    timestamp given twice for one series: the first wins, as the importer does for text). Returns (batch,
    duplicates dropped)."""
    ids: dict[Labels, int] = {}
    rows = {kind: _Rows() for kind in (KIND_FLOAT, KIND_INT_HISTOGRAM, KIND_FLOAT_HISTOGRAM)}
    seen = 0
    for data, source in inputs:
        for i, doc in enumerate(_documents(data, source)):
            where = f"{source}: series {i}"
            sid = ids.setdefault(_labels(doc, where), len(ids))
            samples = doc.get("samples")
            if not isinstance(samples, list):
                raise FormatError(f"{where}: 'samples' must be an array")
            for j, sample in enumerate(samples):
                _add_sample(rows, sid, sample, f"{where} sample {j}").seq.append(seen)
                seen += 1
    return _batch(ids, rows)


def _documents(data: bytes, source: str) -> list[Any]:
    try:
        docs = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{source}: not a JSON dump: {e}") from None
    if not isinstance(docs, list):
        raise FormatError(f"{source}: not a JSON dump: the document is not an array of series")
    return docs


def _labels(doc: Any, where: str) -> Labels:
    labels = doc.get("labels") if isinstance(doc, dict) else None
    if not isinstance(labels, dict) or not labels or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise FormatError(f"{where}: 'labels' must be a non-empty object of strings")
    return from_dict(labels)


def _add_sample(rows: dict[int, _Rows], sid: int, sample: Any, where: str) -> _Rows:
    if not (isinstance(sample, list) and len(sample) == 2 and isinstance(sample[0], int)
            and not isinstance(sample[0], bool)):
        raise FormatError(f"{where}: a sample must be [timestamp_ms, value]")
    t, value = sample
    if isinstance(value, str):
        out = rows[KIND_FLOAT]
        out.floats.append(_float(value, where))
    elif isinstance(value, dict) and value.get("kind") in HISTOGRAM_KINDS:
        kind = HISTOGRAM_KINDS[value["kind"]]
        out = rows[kind]
        out.hists.append(_histogram(t, value, kind == KIND_FLOAT_HISTOGRAM, where))
    else:
        raise FormatError(f"{where}: the value must be a string or a histogram object with kind int or float")
    out.series.append(sid)
    out.t.append(t)
    return out


def _float(text: Any, where: str) -> float:
    if not isinstance(text, str):
        raise FormatError(f"{where}: expected a number as a string, got {json.dumps(text)}")
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"{where}: {text!r} is not a number") from None


def _histogram(t: int, doc: dict[str, Any], is_float: bool, where: str) -> HistogramSample:
    if doc.get("stale") is True:
        return HistogramSample(t=t, count=0, zero_count=0, sum=0.0, stale=True)
    if "start_timestamp" in doc:
        raise FormatError(f"{where}: start timestamps (chunk encodings 5/6) cannot be written")
    try:
        number = (lambda x: _float(x, where)) if is_float else _int
        return HistogramSample(
            t=t, count=number(doc["count"]), zero_count=number(doc["zero_count"]), sum=_float(doc["sum"], where),
            schema=_int(doc["schema"]), zero_threshold=_float(doc["zero_threshold"], where),
            positive_spans=_spans(doc["positive_spans"]), positive_buckets=tuple(map(number, doc["positive_buckets"])),
            negative_spans=_spans(doc["negative_spans"]), negative_buckets=tuple(map(number, doc["negative_buckets"])),
            hint=_int(doc["hint"]), custom_values=tuple(_float(x, where) for x in doc.get("custom_values", ())),
        )
    except KeyError as e:
        raise FormatError(f"{where}: histogram without {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise FormatError(f"{where}: bad histogram: {e}") from None


def _int(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(f"expected an integer, got {json.dumps(x)}")
    return x


def _spans(spans: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(spans, list) or not all(isinstance(s, list) and len(s) == 2 for s in spans):
        raise TypeError("spans must be [offset, length] pairs")
    return tuple((_int(o), _int(n)) for o, n in spans)


def _batch(ids: dict[Labels, int], rows: dict[int, _Rows]) -> tuple[SampleBatch, int]:
    order = sorted(ids, key=lambda lab: lab)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[[ids[lab] for lab in order]] = np.arange(len(order))
    kinds = list(rows)
    series = np.concatenate([rank[np.array(rows[k].series, dtype=np.int64)] for k in kinds])
    t = np.concatenate([np.array(rows[k].t, dtype=np.int64) for k in kinds])
    kind = np.concatenate([np.full(len(rows[k].t), k, dtype=np.uint8) for k in kinds])
    row = np.concatenate([np.arange(len(rows[k].t), dtype=np.int64) for k in kinds])
    ints = build_batch(rows[KIND_INT_HISTOGRAM].hists, is_float=False)
    floats = build_batch(rows[KIND_FLOAT_HISTOGRAM].hists, is_float=True)
    v = np.concatenate([np.array(rows[KIND_FLOAT].floats, dtype=np.float64).view(np.uint64), ints.sum_bits,
                        floats.sum_bits])
    # input order breaks ties: the first of equal (series, t) pairs is kept
    input_order = np.concatenate([np.array(rows[k].seq, dtype=np.int64) for k in kinds])
    perm = np.lexsort((input_order, t, series))
    series, t, kind, row, v = series[perm], t[perm], kind[perm], row[perm], v[perm]
    dup = np.zeros(t.shape[0], dtype=bool)
    dup[1:] = (series[1:] == series[:-1]) & (t[1:] == t[:-1])
    keep = ~dup
    series, t, kind, row, v = series[keep], t[keep], kind[keep], row[keep], v[keep]
    row[kind == KIND_FLOAT] = -1
    offsets = np.concatenate([[0], np.cumsum(np.bincount(series, minlength=len(order)))]).astype(np.int64)
    hist = None
    if bool((kind != KIND_FLOAT).any()):
        hist = HistogramColumns(kind, row, ints, floats)
    return SampleBatch(order, np.full(len(order), -1, np.int64), offsets, t, v, hist=hist), int(dup.sum())
