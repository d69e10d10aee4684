"""``--enable-feature`` names that change PromQL, read as Prometheus reads them (comma-separated, repeatable)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXPERIMENTAL_FUNCTIONS = "promql-experimental-functions"
EXTENDED_RANGE_SELECTORS = "promql-extended-range-selectors"  # the anchored and smoothed modifiers
BINOP_FILL_MODIFIERS = "promql-binop-fill-modifiers"  # fill(), fill_left(), fill_right() on binary operators
PROMQL_FEATURES = frozenset({EXPERIMENTAL_FUNCTIONS, EXTENDED_RANGE_SELECTORS, BINOP_FILL_MODIFIERS})
NO_PROMQL_FEATURES: frozenset[str] = frozenset()
KNOWN_FEATURES = PROMQL_FEATURES


@dataclass(frozen=True)
class Features:
    names: tuple[str, ...] = ()  # as given
    unknown: tuple[str, ...] = ()  # names Prometheus would warn about and ignore

    @property
    def promql(self) -> frozenset[str]:
        """The PromQL features enabled, for the parser and engine."""
        return PROMQL_FEATURES.intersection(self.names)

    @property
    def experimental_functions(self) -> bool:
        return EXPERIMENTAL_FUNCTIONS in self.names


def parse_features(values: Iterable[str]) -> Features:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return Features(names=tuple(names), unknown=tuple(n for n in names if n not in KNOWN_FEATURES))
