"""Label sets as integer keys: many series' labels as ranks in one sorted symbol table, with no strings.

Merging blocks compares and copies label sets by the million; as rank sequences they are compared in
kernels and go to the index writer without a string being built. The order is the label-set order of
Prometheus because the table is sorted (code point order of str is the byte order of UTF-8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.kernels import labelkeys as kern
from thanostools.core.labels import Labels
from thanostools.core.tsdb.index import RawSeries


@dataclass(frozen=True)
class SymbolTable:
    """A sorted symbol table shared by several inputs, and for each input its positions in it."""

    symbols: list[str]
    ranks: list[np.ndarray]  # ranks[k][i]: where input k's symbol i is in ``symbols``

    @classmethod
    def union(cls, inputs: Sequence[Sequence[str]]) -> SymbolTable:
        symbols = sorted(set().union(*inputs))
        rank = {s: i for i, s in enumerate(symbols)}
        return cls(symbols, [np.array([rank[s] for s in syms], dtype=np.int64) for syms in inputs])

    def keys_of(self, k: int, raw: RawSeries) -> LabelKeys:
        """The label sets of input ``k``'s series entries."""
        pairs = np.empty(2 * raw.label_names.shape[0], dtype=np.int64)
        pairs[0::2] = self.ranks[k][raw.label_names]
        pairs[1::2] = self.ranks[k][raw.label_values]
        return LabelKeys(self.symbols, pairs, 2 * np.asarray(raw.label_offsets, dtype=np.int64))


@dataclass(frozen=True)
class LabelKeys:
    """Label sets of series: series i is ``keys[offsets[i]:offsets[i+1]]`` = name₀, value₀, name₁, value₁, …
    as positions in ``symbols`` (sorted)."""

    symbols: list[str]
    keys: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def key(self, i: int) -> np.ndarray:
        return self.keys[self.offsets[i] : self.offsets[i + 1]]

    def labels(self, i: int) -> Labels:
        """Series i's label set as strings (for messages)."""
        k = self.key(i).tolist()
        return tuple((self.symbols[k[j]], self.symbols[k[j + 1]]) for j in range(0, len(k), 2))

    def take(self, idx: np.ndarray) -> LabelKeys:
        """The label sets of series ``idx``, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.offsets[idx + 1] - self.offsets[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = np.repeat(self.offsets[idx] - offsets[:-1], lengths)
        return LabelKeys(self.symbols, self.keys[starts + np.arange(int(offsets[-1]))], offsets)

    def first_out_of_order(self) -> int:
        """-1 when the label sets are strictly increasing, else the index of the first one that is not."""
        bad = np.flatnonzero(kern.not_after_previous(self.keys, self.offsets))
        return int(bad[0]) if bad.size else -1

    def compare(self, i: int, other: np.ndarray) -> int:
        """-1, 0 or 1 as series i's key sorts before, equal to or after the key ``other``."""
        return int(kern.compare_keys(self.keys, int(self.offsets[i]), int(self.offsets[i + 1]), other, 0,
                                     other.shape[0]))

    @staticmethod
    def concat(parts: Sequence[LabelKeys]) -> LabelKeys:
        """Several parts (over the same symbols) back to back."""
        bases = np.cumsum([0, *[p.keys.shape[0] for p in parts[:-1]]])
        offsets = np.concatenate([[0], *[p.offsets[1:] + b for p, b in zip(parts, bases, strict=True)]])
        return LabelKeys(parts[0].symbols, np.concatenate([p.keys for p in parts]), offsets.astype(np.int64))
