"""StoreAPI chunks back to samples (FORMATS.md §7.8, querier side).

Per chunk: ``raw`` when set, else the aggregate the enclosing function asks for; the default
(``AVG``) is ``sum / count`` per window. Counters over downsampled data go through the §7.6
counter-reset iterator across all chunks of the series. Samples are clipped to [mint, maxt].
All payloads of a response are decoded in one kernel call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thanostools._proto.store.storepb import types_pb2
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, counter_reset_series
from thanostools.core.errors import FormatError
from thanostools.core.labels import Labels, format_labels
from thanostools.core.querier import AVG
from thanostools.core.series import SampleBatch
from thanostools.core.storage import chain_samples

FIELDS = {Aggr.COUNT: "count", Aggr.SUM: "sum", Aggr.MIN: "min", Aggr.MAX: "max", Aggr.COUNTER: "counter"}


@dataclass
class _Payloads:
    """Chunk payloads gathered for one batch decode."""

    data: list[bytes]

    def add(self, chunk: types_pb2.Chunk) -> int:
        self.data.append(chunk.data)
        return len(self.data) - 1

    def decode(self, warnings: list[str]) -> list[tuple[np.ndarray, np.ndarray] | None]:
        if not self.data:
            return []
        sizes = np.array([len(d) for d in self.data], np.int64)
        ends = np.cumsum(sizes)
        buf = np.frombuffer(b"".join(self.data), np.uint8)
        try:
            dec = xor.decode_batch(buf, ends - sizes, ends)
            return [dec.chunk(i) for i in range(len(self.data))]
        except FormatError:
            pass
        out: list[tuple[np.ndarray, np.ndarray] | None] = []
        for d in self.data:  # one bad chunk must not lose the others
            try:
                out.append(xor.decode(d))
            except FormatError as exc:
                warnings.append(f"undecodable chunk from a store: {exc}")
                out.append(None)
        return out


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


def _plan(series: Sequence[tuple[Labels, Sequence[types_pb2.AggrChunk]]], aggregate: Aggr | str,
          prim: _Payloads, sec: _Payloads, warnings: list[str]) -> list[list[_Use]]:
    plans: list[list[_Use]] = []
    for lab, chunks in series:
        uses: list[_Use] = []
        for c in sorted(chunks, key=lambda c: c.min_time):
            p, s = _pick(c, aggregate)
            needs_count = aggregate == AVG and not c.HasField("raw")
            if p is None or (needs_count and s is None):
                warnings.append(f"series {format_labels(lab)}: chunk at {c.min_time} lacks the requested aggregate")
                continue
            if p.type != types_pb2.Chunk.XOR or (s is not None and s.type != types_pb2.Chunk.XOR):
                warnings.append(f"series {format_labels(lab)}: histogram chunks are not supported yet")
                continue
            uses.append(_Use(prim.add(p), sec.add(s) if s is not None else -1, not c.HasField("raw")))
        plans.append(uses)
    return plans


def _series_samples(uses: Sequence[_Use], prim: list[tuple[np.ndarray, np.ndarray] | None],
                    sec: list[tuple[np.ndarray, np.ndarray] | None], counter: bool, mint: int, maxt: int,
                    ) -> tuple[np.ndarray, np.ndarray]:
    parts: list[tuple[np.ndarray, np.ndarray]] = []
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
        parts.append((p[0], (p[1].view(np.float64) / s[1].view(np.float64)).view(np.uint64)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    if counter and any(u.downsampled for u in uses):
        # Equal timestamps must survive: they carry the chunks' true last raw values.
        t = np.concatenate([q[0] for q in parts])
        v = np.concatenate([q[1] for q in parts])
        order = np.argsort(t, kind="stable")
        t, fv = counter_reset_series(t[order], v[order])
        v = fv.view(np.uint64)
    else:
        t, v = chain_samples(parts)
    keep = (t >= mint) & (t <= maxt)
    return t[keep], v[keep]


def decode_series(series: Sequence[tuple[Labels, Sequence[types_pb2.AggrChunk]]], aggregate: Aggr | str,
                  mint: int, maxt: int) -> tuple[SampleBatch, list[str]]:
    """Label-sorted (labels, chunks) -> one SampleBatch (series without samples dropped) and warnings."""
    warnings: list[str] = []
    prim, sec = _Payloads([]), _Payloads([])
    plans = _plan(series, aggregate, prim, sec, warnings)
    prim_dec, sec_dec = prim.decode(warnings), sec.decode(warnings)
    counter = aggregate == Aggr.COUNTER
    labels: list[Labels] = []
    ts: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for (lab, _), uses in zip(series, plans, strict=True):
        t, v = _series_samples(uses, prim_dec, sec_dec, counter, mint, maxt)
        if t.shape[0]:
            labels.append(lab)
            ts.append(t)
            vs.append(v)
    if not labels:
        return SampleBatch.concat([]), warnings
    offsets = np.concatenate([[0], np.cumsum([t.shape[0] for t in ts])]).astype(np.int64)
    batch = SampleBatch(labels, np.full(len(labels), -1, np.int64), offsets, np.concatenate(ts).astype(np.int64),
                        np.concatenate(vs).astype(np.uint64))
    return batch, sorted(set(warnings), key=warnings.index)
