"""LabelNames and LabelValues over the served blocks (FORMATS.md §9.6.10) as synchronous core work.

Blocks of every resolution overlapping [start, end] are looked at, as a store gateway does. Without
index matchers the answer comes from the postings table; with them, from the series that have a
chunk in the range. External labels are part of the answer and win over series labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from thanostools.core import labels as labelset
from thanostools.core.inspect import BlockInfo
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.tsdb.block import Block
from thanostools.server.grpc.blocks import BLOCK_ERRORS, BlockSet, block_matches, index_matchers, overlapping
from thanostools.server.grpc.convert import LabelQuery


@dataclass
class LabelResult:
    values: list[str]
    warnings: list[str]
    queried: list[str]


def _series_labels(block: Block, matchers: list[Matcher], q: LabelQuery) -> Iterator[Labels]:
    for sb in block.index.iter_series(block.postings(matchers)):
        rows, _ = sb.rows_in_range(q.mint, q.maxt)
        for i in rows.tolist():
            yield sb.labels[i]


def _per_block(blockset: BlockSet, q: LabelQuery, collect: _Collector) -> LabelResult:
    failures = blockset.failures(q.abort)
    queried: list[str] = []
    infos = [b for b in overlapping(blockset.current(), q.mint, q.maxt) if block_matches(b, q.block_matchers)]
    for info in infos:
        matchers = index_matchers(info, q.matchers)
        if matchers is None:
            continue
        try:
            block = blockset.open(info)
            collect(info, block, matchers)
        except BLOCK_ERRORS as exc:
            blockset.failed(info, exc, failures)
            continue
        queried.append(info.ulid)
    return LabelResult([], failures.warnings, queried)


class _Collector:
    def __init__(self, q: LabelQuery, name: str | None) -> None:
        self.q = q
        self.name = name
        self.found: set[str] = set()

    def __call__(self, info: BlockInfo, block: Block, matchers: list[Matcher]) -> None:
        ext = info.meta.external_labels
        if self.name is None:
            self._names(block, ext, matchers)
        else:
            self._values(block, ext, matchers, self.name)

    def _names(self, block: Block, ext: Labels, matchers: list[Matcher]) -> None:
        found: set[str] = set()
        if matchers:
            for lab in _series_labels(block, matchers, self.q):
                found.update(n for n, _ in lab)
        else:
            found.update(block.index.label_names())
        found.update(n for n, _ in ext)
        self.found |= found

    def _values(self, block: Block, ext: Labels, matchers: list[Matcher], name: str) -> None:
        ext_value = labelset.get(ext, name)
        if ext_value:
            if not matchers or next(_series_labels(block, matchers, self.q), None) is not None:
                self.found.add(ext_value)
        elif matchers:
            self.found.update(v for v in (labelset.get(lab, name) for lab in _series_labels(block, matchers, self.q))
                              if v)
        else:
            self.found.update(v for v in block.index.label_values(name) if v)


def _finish(found: set[str], result: LabelResult, q: LabelQuery) -> LabelResult:
    values = sorted(found)
    if q.limit:
        values = values[: q.limit]
    result.values = values
    return result


def label_names(blockset: BlockSet, q: LabelQuery) -> LabelResult:
    collect = _Collector(q, None)
    result = _per_block(blockset, q, collect)
    collect.found.difference_update(q.without)
    collect.found.discard("")
    return _finish(collect.found, result, q)


def label_values(blockset: BlockSet, q: LabelQuery, name: str) -> LabelResult:
    if name in q.without:
        return LabelResult([], [], [])
    collect = _Collector(q, name)
    return _finish(collect.found, _per_block(blockset, q, collect), q)
