"""Context-aware PromQL completion, computed from our own lexer. No UI and no I/O here.

:func:`context_at` says what is being typed at the cursor; :func:`candidates` turns that into items
using label data that the caller fetched (and cached) elsewhere.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from thanostools.core.promql.parser.functions import AGGREGATIONS, FUNCTIONS
from thanostools.core.promql.parser.lexer import Lexer, T, Token

MAX_ITEMS = 60  # per kind; typing narrows the list
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*$")
_DURATION_PREFIX = re.compile(r"[0-9A-Za-z]*$")
_MATCH_OPS = frozenset({T.EQL, T.NEQ, T.EQL_REGEX, T.NEQ_REGEX})
_GROUPING = frozenset({T.BY, T.WITHOUT, T.ON, T.IGNORING, T.GROUP_LEFT, T.GROUP_RIGHT})
_OPERAND_END = frozenset({T.IDENTIFIER, T.METRIC_IDENTIFIER, T.NUMBER, T.STRING, T.DURATION, T.RIGHT_PAREN,
                          T.RIGHT_BRACE, T.RIGHT_BRACKET})
_NAME_TOKENS = frozenset({T.IDENTIFIER, T.METRIC_IDENTIFIER})

DURATIONS = ("1m", "5m", "10m", "15m", "30m", "1h", "2h", "6h", "12h", "1d", "2d", "7d", "30s", "15s")
AFTER_OPERAND_KEYWORDS = (
    ("and", "set intersection"), ("or", "set union"), ("unless", "set complement"),
    ("offset", "shift the evaluation time back"), ("bool", "comparison returns 0/1"),
    ("on", "match only on these labels"), ("ignoring", "match ignoring these labels"),
    ("group_left", "many-to-one matching"), ("group_right", "one-to-many matching"),
    ("by", "aggregate keeping these labels"), ("without", "aggregate dropping these labels"),
    ("atan2", "arc tangent of two vectors"),
)


class Kind(enum.Enum):
    METRIC = "metric"
    FUNCTION = "function"
    AGGREGATION = "aggregation"
    KEYWORD = "keyword"
    LABEL_NAME = "label"
    LABEL_VALUE = "value"
    DURATION = "duration"
    HISTORY = "history"


class Where(enum.Enum):
    EXPRESSION = "expression"  # a metric, function or aggregation may start here
    OPERATOR = "operator"  # after an operand: binary operators and modifiers
    LABEL_NAME = "label name"
    LABEL_VALUE = "label value"
    DURATION = "duration"
    NOTHING = "nothing"  # inside a string argument, a number, a comment …


@dataclass(frozen=True)
class Context:
    where: Where
    prefix: str  # what is typed already (replaced by the chosen item)
    start: int  # offset where the replaced text begins
    metric: str | None = None  # selector the label data is scoped to
    label: str | None = None
    quote: str | None = None  # the quote a label value was opened with
    history: bool = False  # the whole query so far is one line: past queries fit here


@dataclass(frozen=True)
class Item:
    label: str
    insert: str
    kind: Kind
    detail: str = ""
    help: str = ""


class CompletionData(Protocol):
    """Cached label data; ``None`` means "not fetched yet" (the caller fetches it in the background)."""

    def metric_names(self) -> list[str] | None: ...

    def label_names(self, metric: str | None) -> list[str] | None: ...

    def label_values(self, label: str, metric: str | None) -> list[str] | None: ...

    def history(self) -> list[str]: ...


# --- context ---------------------------------------------------------------------------------------


def _lex(text: str) -> tuple[list[Token], Lexer]:
    lexer = Lexer(text)
    return [t for t in lexer if t.kind is not T.COMMENT], lexer


def first_metric(text: str) -> str | None:
    """The first metric name of a query (a name not followed by ``(``), to scope label lookups."""
    toks, _ = _lex(text)
    for i, tok in enumerate(toks):
        nxt = toks[i + 1].kind if i + 1 < len(toks) else T.EOF
        if tok.kind in _NAME_TOKENS and nxt is not T.LEFT_PAREN and tok.val not in FUNCTIONS:
            return tok.val
    return None


def _brace_metric(toks: Sequence[Token]) -> str | None:
    """The metric a selector is for: the name before its ``{``, or a ``__name__="…"`` matcher inside."""
    brace = max(i for i, t in enumerate(toks) if t.kind is T.LEFT_BRACE)
    if brace > 0 and toks[brace - 1].kind in _NAME_TOKENS:
        return toks[brace - 1].val
    inner = toks[brace + 1:]
    for i in range(len(inner) - 2):
        if inner[i].val == "__name__" and inner[i + 1].kind is T.EQL and inner[i + 2].kind is T.STRING:
            return inner[i + 2].val[1:-1]
    return None


def _grouping_open(toks: Sequence[Token]) -> bool:
    """Whether the innermost open parenthesis belongs to by/without/on/ignoring/group_left/group_right."""
    stack: list[T] = []
    for i, tok in enumerate(toks):
        if tok.kind is T.LEFT_PAREN:
            stack.append(toks[i - 1].kind if i else T.EOF)
        elif tok.kind is T.RIGHT_PAREN and stack:
            stack.pop()
    return bool(stack) and stack[-1] in _GROUPING


def context_at(text: str, cursor: int) -> Context:
    before = text[:cursor]
    toks, lexer = _lex(before)
    end = toks.pop() if toks and toks[-1].kind in (T.EOF, T.ERROR) else None
    history = "\n" not in text and cursor == len(text)
    if end is not None and end.kind is T.ERROR and end.val == "unterminated quoted string":
        return _in_string(before, toks, end.pos, history)
    if lexer.bracket_open:
        prefix = _DURATION_PREFIX.search(before)
        assert prefix is not None
        return Context(Where.DURATION, prefix.group(), cursor - len(prefix.group()))
    word_match = _WORD.search(before)
    word = word_match.group() if word_match else ""
    start = cursor - len(word)
    if word and start > 0 and (before[start - 1].isdigit() or before[start - 1] == "."):
        return Context(Where.NOTHING, word, start)  # a number or duration such as 5m, 1e3
    sig = [t for t in toks if t.pos < start]
    prev = sig[-1].kind if sig else None
    if lexer.brace_open:
        return _in_braces(sig, prev, word, start)
    if _grouping_open(sig) and prev in (T.LEFT_PAREN, T.COMMA):
        return Context(Where.LABEL_NAME, word, start, metric=first_metric(text[:start] + text[cursor:]))
    if prev in _OPERAND_END:
        return Context(Where.OPERATOR, word, start)
    return Context(Where.EXPRESSION, word, start, history=history and before.strip() == word.strip())


def _in_string(before: str, toks: Sequence[Token], quote_pos: int, history: bool) -> Context:
    if len(toks) >= 2 and toks[-1].kind in _MATCH_OPS and toks[-2].kind in _NAME_TOKENS | {T.STRING}:
        label = toks[-2].val if toks[-2].kind is not T.STRING else toks[-2].val[1:-1]
        return Context(Where.LABEL_VALUE, before[quote_pos + 1:], quote_pos, metric=_brace_metric(toks),
                       label=label, quote=before[quote_pos])
    return Context(Where.NOTHING, "", len(before))


def _in_braces(sig: Sequence[Token], prev: T | None, word: str, start: int) -> Context:
    metric = _brace_metric(sig)
    if prev in (T.LEFT_BRACE, T.COMMA):
        return Context(Where.LABEL_NAME, word, start, metric=metric)
    if prev in _MATCH_OPS and not word and len(sig) >= 2:
        return Context(Where.LABEL_VALUE, "", start, metric=metric, label=sig[-2].val)
    return Context(Where.NOTHING, word, start)


# --- candidates -----------------------------------------------------------------------------------


def _ranked(names: Sequence[str], prefix: str) -> list[str]:
    """Names starting with the prefix (case-insensitive), then names containing it."""
    p = prefix.lower()
    if not p:
        return list(names[:MAX_ITEMS])
    starts = [n for n in names if n.lower().startswith(p)]
    if len(starts) >= MAX_ITEMS:
        return starts[:MAX_ITEMS]
    contains = [n for n in names if p in n.lower() and not n.lower().startswith(p)]
    return (starts + contains)[:MAX_ITEMS]


def function_signature(name: str) -> str:
    fn = FUNCTIONS[name]
    args = [t.documented for t in fn.arg_types]
    if fn.variadic:
        args[-1] = f"[{args[-1]}{', …' if fn.variadic < 0 else ''}]"
    return f"{name}({', '.join(args)}) → {fn.return_type.documented}"


def _expression_items(ctx: Context, data: CompletionData) -> list[Item] | None:
    metrics = data.metric_names()
    items = [Item(m, m, Kind.METRIC) for m in _ranked(metrics or [], ctx.prefix)]
    items += [Item(n, n + "(", Kind.FUNCTION, function_signature(n), FUNCTIONS[n].help)
              for n in _ranked(sorted(FUNCTIONS), ctx.prefix)]
    items += [Item(n, n, Kind.AGGREGATION, f"{n} [by|without (labels)] (expr)", AGGREGATIONS[n].help)
              for n in _ranked(sorted(AGGREGATIONS), ctx.prefix)]
    if ctx.history:
        typed = ctx.prefix.strip()
        items = [Item(q.replace("\n", " "), q, Kind.HISTORY, "history") for q in data.history()
                 if q != typed and (not typed or typed.lower() in q.lower())][:20] + items
    if metrics is None and not items:
        return None
    return items


def _label_value_items(ctx: Context, data: CompletionData) -> list[Item] | None:
    assert ctx.label is not None
    values = data.label_values(ctx.label, ctx.metric)
    if values is None:
        return None
    quote = ctx.quote or '"'
    return [Item(v, quote + _escape(v, quote) + quote, Kind.LABEL_VALUE, ctx.label)
            for v in _ranked(values, ctx.prefix)]


def _escape(value: str, quote: str) -> str:
    if quote == "`":
        return value
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")


def candidates(ctx: Context, data: CompletionData) -> list[Item] | None:
    """Items for a context; ``None`` while the label data they need is still being fetched."""
    if ctx.where is Where.EXPRESSION:
        return _expression_items(ctx, data)
    if ctx.where is Where.OPERATOR:
        p = ctx.prefix.lower()
        return [Item(k, k, Kind.KEYWORD, "", h) for k, h in AFTER_OPERAND_KEYWORDS if k.startswith(p) and k != p]
    if ctx.where is Where.LABEL_NAME:
        names = data.label_names(ctx.metric)
        if names is None:
            return None
        return [Item(n, n, Kind.LABEL_NAME, ctx.metric or "") for n in _ranked(names, ctx.prefix) if n != "__name__"]
    if ctx.where is Where.LABEL_VALUE:
        return _label_value_items(ctx, data)
    if ctx.where is Where.DURATION:
        return [Item(d, d, Kind.DURATION) for d in DURATIONS if d.startswith(ctx.prefix) and d != ctx.prefix]
    return []


def selector_for(metric: str | None) -> str | None:
    """The series selector label lookups are scoped to."""
    if not metric:
        return None
    if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", metric):
        return metric
    return '{__name__="' + metric.replace("\\", "\\\\").replace('"', '\\"') + '"}'


# --- cache -----------------------------------------------------------------------------------------

Key = tuple[str, str, str]  # ("names", selector, "") or ("values", selector, label)


class CompletionCache:
    """Label data by key, with a TTL. A miss records the key in ``missing`` for the caller to fetch in a
    worker, and answers None (or the stale value) at once: lookups never wait for I/O."""

    def __init__(self, history: Callable[[], list[str]] = list, *, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._history = history
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: dict[Key, tuple[float, list[str]]] = {}
        self._pending: set[Key] = set()
        self.missing: list[Key] = []
        self._lock = threading.Lock()

    def _get(self, key: Key) -> list[str] | None:
        with self._lock:
            hit = self._data.get(key)
            fresh = hit is not None and self._clock() - hit[0] < self.ttl_s
            if not fresh and key not in self._pending:
                self._pending.add(key)
                self.missing.append(key)
            return hit[1] if hit is not None else None

    def put(self, key: Key, values: list[str]) -> None:
        with self._lock:
            self._data[key] = (self._clock(), values)
            self._pending.discard(key)

    def failed(self, key: Key) -> None:
        """Remember an empty answer so a failing source is not asked on every keystroke."""
        self.put(key, self._data.get(key, (0.0, []))[1])

    def take_missing(self) -> list[Key]:
        with self._lock:
            out, self.missing = self.missing, []
            return out

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._pending.clear()
            self.missing = []

    def metric_names(self) -> list[str] | None:
        return self._get(("values", "", "__name__"))

    def label_names(self, metric: str | None) -> list[str] | None:
        return self._get(("names", selector_for(metric) or "", ""))

    def label_values(self, label: str, metric: str | None) -> list[str] | None:
        return self._get(("values", selector_for(metric) or "", label))

    def history(self) -> list[str]:
        return self._history()


def fetch(source: LabelSource, key: Key, start_ms: int, end_ms: int) -> list[str]:
    """Fetch one cache key from a source (blocking: call it from a worker thread)."""
    kind, selector, label = key
    if kind == "names":
        return source.label_names(selector or None, start_ms, end_ms)
    return source.label_values(label, selector or None, start_ms, end_ms)


class LabelSource(Protocol):
    def label_names(self, selector: str | None, start_ms: int, end_ms: int) -> list[str]: ...

    def label_values(self, name: str, selector: str | None, start_ms: int, end_ms: int) -> list[str]: ...


def fuzzy_match(query: str, candidate: str) -> tuple[float, list[int]] | None:
    """Score and matched positions of ``query`` as a case-insensitive subsequence of ``candidate``;
    substrings score above scattered matches, earlier and shorter candidates above later and longer."""
    q, c = query.lower(), candidate.lower()
    if not q:
        return 0.0, []
    at = c.find(q)
    if at >= 0:
        return 200.0 - at - len(c) * 0.01 + (50 if at == 0 else 0), list(range(at, at + len(q)))
    positions: list[int] = []
    pos = 0
    for ch in q:
        pos = c.find(ch, pos)
        if pos < 0:
            return None
        positions.append(pos)
        pos += 1
    spread = positions[-1] - positions[0] - len(q) + 1
    return 100.0 - spread - positions[0] * 0.1 - len(c) * 0.01, positions
