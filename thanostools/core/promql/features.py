"""``--enable-feature`` names that change PromQL, read as Prometheus reads them (comma-separated, repeatable)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXPERIMENTAL_FUNCTIONS = "promql-experimental-functions"
KNOWN_FEATURES = frozenset({EXPERIMENTAL_FUNCTIONS})


@dataclass(frozen=True)
class Features:
    names: tuple[str, ...] = ()  # as given
    experimental_functions: bool = False
    unknown: tuple[str, ...] = ()  # names Prometheus would warn about and ignore


def parse_features(values: Iterable[str]) -> Features:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return Features(names=tuple(names), experimental_functions=EXPERIMENTAL_FUNCTIONS in names,
                    unknown=tuple(n for n in names if n not in KNOWN_FEATURES))
