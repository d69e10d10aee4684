"""Syntax highlighting of PromQL from our own lexer, in the shape Textual's TextArea draws:
per line, ``(start byte, end byte or None, highlight name)``."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator

from rich.style import Style

from thanostools.core.promql.parser.functions import FUNCTIONS
from thanostools.core.promql.parser.lexer import AGGREGATORS, KEYWORDS, OPERATORS, PREPROCESSORS, Lexer, T, Token

Highlight = tuple[int, int | None, str]

STYLES: dict[str, Style] = {
    "pq.metric": Style(color="#4fc1ff"),
    "pq.function": Style(color="#dcdcaa"),
    "pq.keyword": Style(color="#c586c0", bold=True),
    "pq.label": Style(color="#9cdcfe", italic=True),
    "pq.string": Style(color="#ce9178"),
    "pq.number": Style(color="#b5cea8"),
    "pq.operator": Style(color="#d4d4d4", bold=True),
    "pq.comment": Style(color="#6a9955", italic=True),
    "pq.error": Style(color="white", bgcolor="#c72e2e", bold=True),
}

_KEYWORD_KINDS = AGGREGATORS | KEYWORDS | PREPROCESSORS | {T.LAND, T.LOR, T.LUNLESS, T.ATAN2}
_GROUPING = frozenset({T.BY, T.WITHOUT, T.ON, T.IGNORING, T.GROUP_LEFT, T.GROUP_RIGHT})
_NAMES = frozenset({T.IDENTIFIER, T.METRIC_IDENTIFIER})


def classify(tokens: list[Token]) -> Iterator[tuple[Token, str]]:
    """Highlight name of each token; names inside ``{}`` and grouping parentheses are labels."""
    in_braces = False
    grouping_depth = 0
    for i, tok in enumerate(tokens):
        kind = tok.kind
        nxt = tokens[i + 1].kind if i + 1 < len(tokens) else T.EOF
        prev = tokens[i - 1].kind if i else T.EOF
        if kind is T.LEFT_BRACE:
            in_braces = True
        elif kind is T.RIGHT_BRACE:
            in_braces = False
        elif kind is T.LEFT_PAREN and prev in _GROUPING:
            grouping_depth = 1
        elif kind is T.RIGHT_PAREN and grouping_depth:
            grouping_depth = 0
        name = _name(tok, nxt, in_braces or grouping_depth > 0)
        if name:
            yield tok, name


def _name(tok: Token, nxt: T, label_position: bool) -> str | None:
    kind = tok.kind
    if kind in _NAMES:
        if label_position:
            return "pq.label"
        return "pq.function" if nxt is T.LEFT_PAREN and tok.val in FUNCTIONS else "pq.metric"
    if kind is T.STRING:
        return "pq.string"
    if kind in (T.NUMBER, T.DURATION):
        return "pq.number"
    if kind is T.COMMENT:
        return "pq.comment"
    if kind in _KEYWORD_KINDS:
        return "pq.label" if label_position else "pq.keyword"
    if kind in OPERATORS or kind is T.EQL:
        return "pq.operator"
    return None


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts += [i + 1 for i, c in enumerate(text) if c == "\n"]
    return starts


def highlights(text: str, error_pos: int | None = None) -> dict[int, list[Highlight]]:
    """Highlights of a whole document; ``error_pos`` marks one character (or the end of input) in red."""
    out: dict[int, list[Highlight]] = defaultdict(list)
    lines = text.split("\n")
    starts = _line_starts(text)

    def add(start: int, end: int, name: str) -> None:
        while start < end:
            row = bisect_right(starts, start) - 1
            line, line_start = lines[row], starts[row]
            stop = min(end, line_start + len(line))
            a = len(line[:start - line_start].encode())
            b = len(line[:stop - line_start].encode())
            if b > a:
                out[row].append((a, b, name))
            start = line_start + len(line) + 1

    tokens = [t for t in Lexer(text) if t.kind is not T.EOF]
    for tok, name in classify(tokens):
        if tok.kind is not T.ERROR:
            add(tok.pos, tok.pos + len(tok.val), name)
    if error_pos is not None:
        pos = min(max(0, error_pos), len(text))
        row = bisect_right(starts, pos) - 1
        col = len(lines[row][:pos - starts[row]].encode())
        out[row].append((col, col + 1, "pq.error"))
    return out
