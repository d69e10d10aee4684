"""StoreAPI chunks back to samples (FORMATS.md §7.8, querier side).

Per chunk: ``raw`` when set, else the aggregate the enclosing function asks for; the default
(``AVG``) is ``sum / count`` per window. Counters over downsampled data go through the §7.6
counter-reset iterator across all chunks of the series. Samples are clipped to [mint, maxt].
All XOR payloads of a response are decoded in one kernel call; native-histogram chunks (storepb
HISTOGRAM / FLOAT_HISTOGRAM, raw only) in one ``decode_by_kind`` call into the batch's histogram part, when
the reader takes histograms; a float-only reader skips them with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from thanostools._proto.store.storepb import types_pb2
from thanostools.core.chunkenc import histogram, xor
from thanostools.core.chunkenc.aggr import Aggr, counter_reset_series
from thanostools.core.errors import CorruptBlockError, FormatError
from thanostools.core.histograms import HistogramBatch
from thanostools.core.labels import Labels, format_labels
from thanostools.core.querier import AVG
from thanostools.core.series import (
    KIND_FLOAT_HISTOGRAM,
    KIND_INT_HISTOGRAM,
    HistogramColumns,
    SampleBatch,
    SampleRun,
)
from thanostools.core.storage import chain_runs
from thanostools.core.tsdb.chunks import ENC_XOR

FIELDS = {Aggr.COUNT: "count", Aggr.SUM: "sum", Aggr.MIN: "min", Aggr.MAX: "max", Aggr.COUNTER: "counter"}
# storepb Chunk.Encoding -> TSDB chunk encoding byte (FORMATS.md §5.5; the server translates back).
TSDB_ENCODINGS = {types_pb2.Chunk.XOR: ENC_XOR, types_pb2.Chunk.HISTOGRAM: histogram.ENC_HISTOGRAM,
                  types_pb2.Chunk.FLOAT_HISTOGRAM: histogram.ENC_FLOAT_HISTOGRAM}

# One chunk's samples: timestamps, value bits (a histogram's sum) and the histogram part (None: floats).
_Samples = tuple[np.ndarray, np.ndarray, HistogramColumns | None]


@dataclass
class _Payloads:
    """Chunk payloads gathered for one batch decode, with their TSDB encodings and what to call them."""

    data: list[bytes] = field(default_factory=list)
    encodings: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, chunk: types_pb2.Chunk, name: str) -> int:
        self.data.append(chunk.data)
        self.encodings.append(TSDB_ENCODINGS[chunk.type])
        self.names.append(name)
        return len(self.data) - 1

    def decode(self, warnings: list[str]) -> list[_Samples | None]:
        out: list[_Samples | None] = [None] * len(self.data)
        if not self.data:
            return out
        sizes = np.array([len(d) for d in self.data], np.int64)
        ends = np.cumsum(sizes)
        starts = ends - sizes
        buf = np.frombuffer(b"".join(self.data), np.uint8)
        encs = np.array(self.encodings, np.int64)
        floats = np.flatnonzero(encs == ENC_XOR)
        if floats.size:
            self._decode_xor(buf, starts[floats], ends[floats], floats, out, warnings)
        hists = np.flatnonzero(encs != ENC_XOR)
        if hists.size:
            self._decode_histograms(buf, starts[hists], ends[hists], encs[hists], hists, out, warnings)
        return out

    def _decode_xor(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, which: np.ndarray,
                    out: list[_Samples | None], warnings: list[str]) -> None:
        try:
            dec = xor.decode_batch(buf, starts, ends)
            for k, i in enumerate(which.tolist()):
                out[i] = (*dec.chunk(k), None)
            return
        except FormatError:
            pass
        for i in which.tolist():  # one bad chunk must not lose the others
            try:
                out[i] = (*xor.decode(self.data[i]), None)
            except FormatError as exc:
                warnings.append(f"{self.names[i]} is undecodable: {exc}")

    def _decode_histograms(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, encs: np.ndarray,
                           which: np.ndarray, out: list[_Samples | None], warnings: list[str]) -> None:
        try:
            ints, floats, is_float = histogram.decode_by_kind(buf, starts, ends, encs)
        except CorruptBlockError:
            for k, i in enumerate(which.tolist()):  # one bad chunk must not lose the others
                try:
                    ints, floats, is_float = histogram.decode_by_kind(buf, starts[k : k + 1], ends[k : k + 1],
                                                                      encs[k : k + 1])
                except CorruptBlockError as exc:
                    warnings.append(f"{self.names[i]} is undecodable: {exc.reason.split(': ', 1)[-1]}")
                    continue
                out[i] = _chunk_samples(ints, floats, bool(is_float[0]), 0)
            return
        for chunks, of_floats in ((which[~is_float], False), (which[is_float], True)):
            for k, i in enumerate(chunks.tolist()):
                out[i] = _chunk_samples(ints, floats, of_floats, k)


def _chunk_samples(ints: HistogramBatch, floats: HistogramBatch, of_floats: bool, k: int) -> _Samples:
    """Chunk k of the float or integer batch as samples whose histogram part points into the decoded batches
    (shared by all chunks of the call: concatenating them copies nothing)."""
    batch = floats if of_floats else ints
    lo, hi = int(batch.offsets[k]), int(batch.offsets[k + 1])
    kind = KIND_FLOAT_HISTOGRAM if of_floats else KIND_INT_HISTOGRAM
    cols = HistogramColumns(np.full(hi - lo, kind, np.uint8), np.arange(lo, hi, dtype=np.int64), ints, floats)
    return batch.t[lo:hi], batch.sum_bits[lo:hi], cols


@dataclass(frozen=True)
class _Use:
    primary: int
    secondary: int  # count payload for AVG over downsampled chunks, else -1
    downsampled: bool


def _pick(c: types_pb2.AggrChunk, aggregate: Aggr | str) -> tuple[types_pb2.Chunk | None, types_pb2.Chunk | None]:
    if c.HasField("raw"):
        return c.raw, None
    if not isinstance(aggregate, Aggr):
        return (c.sum if c.HasField("sum") else None), (c.count if c.HasField("count") else None)
    name = FIELDS[aggregate]
    return (getattr(c, name) if c.HasField(name) else None), None


def _unusable(lab: Labels, c: types_pb2.AggrChunk, p: types_pb2.Chunk, s: types_pb2.Chunk | None,
              histograms: bool) -> str | None:
    """Why the picked payloads cannot be decoded here, or None."""
    for chunk in (p, s):
        if chunk is not None and chunk.type not in TSDB_ENCODINGS:
            return f"series {format_labels(lab)}: chunk at {c.min_time} has unknown type {chunk.type}"
    if p.type == types_pb2.Chunk.XOR and (s is None or s.type == types_pb2.Chunk.XOR):
        return None
    if not c.HasField("raw"):
        return f"series {format_labels(lab)}: downsampled chunk at {c.min_time} holds a histogram aggregate"
    if not histograms:
        return f"series {format_labels(lab)}: histogram chunks skipped (this reader handles floats only)"
    return None


def _plan(series: Sequence[tuple[Labels, Sequence[types_pb2.AggrChunk]]], aggregate: Aggr | str,
          prim: _Payloads, sec: _Payloads, warnings: list[str], histograms: bool) -> list[list[_Use]]:
    plans: list[list[_Use]] = []
    for lab, chunks in series:
        uses: list[_Use] = []
        for c in sorted(chunks, key=lambda c: c.min_time):
            p, s = _pick(c, aggregate)
            needs_count = aggregate == AVG and not c.HasField("raw")
            if p is None or (needs_count and s is None):
                warnings.append(f"series {format_labels(lab)}: chunk at {c.min_time} lacks the requested aggregate")
                continue
            why = _unusable(lab, c, p, s, histograms)
            if why is not None:
                warnings.append(why)
                continue
            name = f"series {format_labels(lab)}: chunk at {c.min_time}"
            uses.append(_Use(prim.add(p, name), sec.add(s, name) if s is not None else -1, not c.HasField("raw")))
        plans.append(uses)
    return plans


def _series_samples(lab: Labels, uses: Sequence[_Use], prim: list[_Samples | None], sec: list[_Samples | None],
                    counter: bool, mint: int, maxt: int) -> SampleRun:
    parts: list[_Samples] = []
    for u in uses:
        p = prim[u.primary]
        if p is None:
            continue
        if u.secondary < 0:
            parts.append(p)
            continue
        s = sec[u.secondary]
        if s is None or not np.array_equal(p[0], s[0]):
            continue  # sum and count windows must line up
        parts.append((p[0], (p[1].view(np.float64) / s[1].view(np.float64)).view(np.uint64), None))
    if not parts:
        return lab, np.zeros(0, np.int64), np.zeros(0, np.uint64), None
    if counter and any(u.downsampled for u in uses) and all(q[2] is None for q in parts):
        # Equal timestamps must survive: they carry the chunks' true last raw values.
        t = np.concatenate([q[0] for q in parts])
        v = np.concatenate([q[1] for q in parts])
        order = np.argsort(t, kind="stable")
        t, fv = counter_reset_series(t[order], v[order])
        v, hist = fv.view(np.uint64), None
    else:
        _, t, v, hist = chain_runs(lab, [(lab, *q) for q in parts])
    keep = np.flatnonzero((t >= mint) & (t <= maxt))
    return lab, t[keep], v[keep], None if hist is None else hist.take(keep)


def decode_series(series: Sequence[tuple[Labels, Sequence[types_pb2.AggrChunk]]], aggregate: Aggr | str,
                  mint: int, maxt: int, *, histograms: bool = False) -> tuple[SampleBatch, list[str]]:
    """Label-sorted (labels, chunks) -> one SampleBatch (series without samples dropped) and warnings.

    With ``histograms``, native-histogram chunks are decoded into the batch's histogram part; without, they are
    skipped with a warning (readers that handle floats only)."""
    warnings: list[str] = []
    prim, sec = _Payloads(), _Payloads()
    plans = _plan(series, aggregate, prim, sec, warnings, histograms)
    prim_dec, sec_dec = prim.decode(warnings), sec.decode(warnings)
    counter = aggregate == Aggr.COUNTER
    runs = [_series_samples(lab, uses, prim_dec, sec_dec, counter, mint, maxt)
            for (lab, _), uses in zip(series, plans, strict=True)]
    batch = SampleBatch.of_runs([r for r in runs if r[1].shape[0]])
    return batch, sorted(set(warnings), key=warnings.index)
