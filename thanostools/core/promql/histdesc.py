"""The promqltest notation of native histograms: ``{{schema:0 sum:5 count:4 buckets:[1 2 1]}}``.

Keys: ``schema``, ``sum``, ``count``, ``z_bucket`` (zero count), ``z_bucket_w`` (zero threshold),
``custom_values:[…]``, ``buckets:[…]`` with ``offset`` (one positive span), ``n_buckets:[…]`` with ``n_offset``,
``counter_reset_hint`` (``unknown``, ``reset``, ``not_reset``, ``gauge``). A series item ``{{a}}+{{b}}xN``
is ``a``, ``a+b``, … (histogram addition, N times), ``-`` subtracts.
"""

from __future__ import annotations

import re

import numpy as np

from thanostools.core.promql.floathist import (
    HINT_GAUGE,
    HINT_NOT_RESET,
    HINT_RESET,
    HINT_UNKNOWN,
    FloatHistogram,
)
from thanostools.core.promql.parser.parse import parse_number
from thanostools.core.promql.promqltest import HistogramRef

_ITEM = re.compile(r"\s*([a-z_]+)\s*:\s*(\[[^\]]*\]|[^\s\[\]]+)")
_HINTS = {"unknown": HINT_UNKNOWN, "reset": HINT_RESET, "not_reset": HINT_NOT_RESET, "gauge": HINT_GAUGE}
_KEYS = frozenset({"schema", "sum", "count", "z_bucket", "z_bucket_w", "custom_values", "buckets", "offset",
                   "n_buckets", "n_offset", "counter_reset_hint"})


def parse_histogram(text: str) -> FloatHistogram:
    """One ``{{…}}`` body (without the braces)."""
    fields: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None:
            raise ValueError(f"bad histogram description near {text[pos:]!r}")
        key, value = m.group(1), m.group(2)
        if key not in _KEYS:
            raise ValueError(f"unknown histogram field {key!r}")
        if key in fields:
            raise ValueError(f'duplicate key "{key}" in histogram')
        fields[key] = value
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    hint = fields.get("counter_reset_hint", "unknown")
    if hint not in _HINTS:
        raise ValueError(f"error parsing counter_reset_hint: unknown value {hint}")
    pos_counts = _numbers(fields.get("buckets", "[]"))
    neg_counts = _numbers(fields.get("n_buckets", "[]"))
    return FloatHistogram(
        schema=int(fields.get("schema", "0")), zero_threshold=_number(fields.get("z_bucket_w", "0")),
        zero_count=_number(fields.get("z_bucket", "0")), count=_number(fields.get("count", "0")),
        sum=_number(fields.get("sum", "0")),
        pos_idx=int(fields.get("offset", "0")) + np.arange(pos_counts.shape[0], dtype=np.int64), pos=pos_counts,
        neg_idx=int(fields.get("n_offset", "0")) + np.arange(neg_counts.shape[0], dtype=np.int64), neg=neg_counts,
        custom_values=_numbers(fields.get("custom_values", "[]")), hint=_HINTS[hint],
    )


def _number(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * parse_number(text.lstrip("+-"))


def _numbers(text: str) -> np.ndarray:
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"expected a [list] of numbers, got {text!r}")
    return np.array([_number(x) for x in text[1:-1].split()], np.float64)


class HistogramResolver:
    """Turns :class:`HistogramRef` s into histograms, computing each ``{{a}}+{{b}}xN`` sequence once."""

    def __init__(self) -> None:
        self._sequences: dict[tuple[str, str, int], list[FloatHistogram]] = {}
        self._single: dict[str, FloatHistogram] = {}

    def resolve(self, ref: HistogramRef) -> FloatHistogram:
        if ref.delta is None:
            if ref.base not in self._single:
                self._single[ref.base] = parse_histogram(ref.base)
            return self._single[ref.base]
        key = (ref.base, ref.delta, ref.sign)
        seq = self._sequences.setdefault(key, [parse_histogram(ref.base)])
        if len(seq) <= ref.index:
            inc = parse_histogram(ref.delta)
            while len(seq) <= ref.index:
                cur = seq[-1]
                if cur.schema > inc.schema:
                    raise ValueError(f"error combining histograms: cannot merge from schema {inc.schema} "
                                     f"to {cur.schema}")
                seq.append((cur.add(inc) if ref.sign > 0 else cur.sub(inc))[0])
        return seq[ref.index]
