"""Label matchers (``=``, ``!=``, ``=~``, ``!~``) with RE2 semantics, fully anchored as in Prometheus 3.x."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import re2

from thanostools.core.errors import ParseError
from thanostools.core.labels import Labels, get


class MatchType(enum.Enum):
    EQ = "="
    NEQ = "!="
    RE = "=~"
    NRE = "!~"


def compile_anchored(pattern: str) -> re2._Regexp:
    """Compile ``pattern`` as Prometheus does: ``^(?s:pattern)$``."""
    try:
        return re2.compile(f"^(?s:{pattern})$")
    except re2.error as exc:
        raise ParseError(f"invalid regular expression {pattern!r}: {exc}") from None


@dataclass(frozen=True)
class Matcher:
    type: MatchType
    name: str
    value: str
    _regex: re2._Regexp | None = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if self.type in (MatchType.RE, MatchType.NRE) and self._regex is None:
            object.__setattr__(self, "_regex", compile_anchored(self.value))

    @classmethod
    def eq(cls, name: str, value: str) -> Matcher:
        return cls(MatchType.EQ, name, value)

    def matches(self, value: str) -> bool:
        """Whether a label value matches; an absent label has the value ``""``."""
        if self.type is MatchType.EQ:
            return value == self.value
        if self.type is MatchType.NEQ:
            return value != self.value
        assert self._regex is not None
        hit = self._regex.match(value) is not None
        return hit if self.type is MatchType.RE else not hit

    @cached_property
    def matches_empty(self) -> bool:
        return self.matches("")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type.value}"{escaped}"'


def matches_all(matchers: Sequence[Matcher], labels: Labels) -> bool:
    return all(m.matches(get(labels, m.name)) for m in matchers)
