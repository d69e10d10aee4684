"""Label sets.

A label set is a tuple of ``(name, value)`` pairs sorted by name, names unique, no empty values.
Python's tuple ordering on such tuples is exactly Prometheus' ``labels.Compare`` (names, then
values, prefix first), because ``str`` comparison by code point equals bytewise UTF-8 order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import xxhash

Labels = tuple[tuple[str, str], ...]

METRIC_NAME = "__name__"
# The metric name and the type-and-unit metadata labels that travel with it: dropped together (Prometheus 3.x).
NAME_LABELS = frozenset({METRIC_NAME, "__type__", "__unit__"})
EMPTY: Labels = ()

_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def from_pairs(pairs: Iterable[tuple[str, str]]) -> Labels:
    """Build a label set; drops empty values, keeps the last value of a repeated name."""
    merged: dict[str, str] = {}
    for name, value in pairs:
        merged[name] = value
    return tuple(sorted((n, v) for n, v in merged.items() if v != ""))


def from_dict(mapping: Mapping[str, str] | None) -> Labels:
    return from_pairs((mapping or {}).items())


def to_dict(labels: Labels) -> dict[str, str]:
    return dict(labels)


def get(labels: Labels, name: str) -> str:
    for n, v in labels:
        if n == name:
            return v
    return ""


def without(labels: Labels, names: Iterable[str]) -> Labels:
    drop = set(names)
    return tuple((n, v) for n, v in labels if n not in drop)


def merge(base: Labels, override: Labels) -> Labels:
    """Labels of ``base`` with ``override`` winning on equal names (external labels win)."""
    return from_pairs([*base, *override])


def label_hash(labels: Labels) -> int:
    """XXH64 over ``name 0xFF value 0xFF`` for every label (Prometheus ``labels.Hash``)."""
    h = xxhash.xxh64(seed=0)
    for name, value in labels:
        h.update(name.encode())
        h.update(b"\xff")
        h.update(value.encode())
        h.update(b"\xff")
    return h.intdigest()


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def format_labels(labels: Labels, *, with_name: bool = True) -> str:
    """Prometheus text form: ``name{a="b", c="d"}`` (``{}`` for an empty set).

    Names that are not valid legacy identifiers are quoted the way Prometheus 3.x prints them.
    """
    name = get(labels, METRIC_NAME) if with_name else ""
    parts: list[str] = []
    if name and not _LEGACY_NAME.match(name):
        parts.append(_quote(name))
        name = ""
    for n, v in labels:
        if n == METRIC_NAME and with_name:
            continue
        key = n if _LEGACY_LABEL.match(n) else _quote(n)
        parts.append(f"{key}={_quote(v)}")
    if not parts:
        return name if name else "{}"
    return f"{name}{{{', '.join(parts)}}}"
