"""PromQL parser: recursive descent with precedence climbing, Prometheus 3.x semantics.

Errors are reported like Prometheus reports its first error: grammar-level errors in the order
the text is read, then (only for syntactically valid input) type-checking errors in
Prometheus' check order. The experimental constructs (functions and aggregations, the anchored/smoothed
selector modifiers, fill() modifiers on binary operators) are accepted when their feature is in
``features`` (all of them by default), else refused with Prometheus' "not enabled" messages.
Duration expressions (ranges, subquery steps and offsets) are on, as in Prometheus 3.14
(``parser/durations.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import NoReturn

from thanostools.core.errors import ParseError
from thanostools.core.goformat import format_f6, go_quote
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.promql.features import (
    BINOP_FILL_MODIFIERS,
    EXPERIMENTAL_FUNCTIONS,
    EXTENDED_RANGE_SELECTORS,
    PROMQL_FEATURES,
)
from thanostools.core.promql.parser.ast import (
    COMPARISON_OPS,
    PARAMETRIC_AGGREGATIONS,
    SET_OPS,
    AggregateExpr,
    BinaryExpr,
    Call,
    Cardinality,
    DurationExpr,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StartOrEnd,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    ValueType,
    VectorMatching,
    VectorSelector,
    float_from_bits,
    type_of,
)
from thanostools.core.promql.parser.durations import reads_query, seconds, to_ms
from thanostools.core.promql.parser.functions import AGGREGATIONS, FUNCTIONS
from thanostools.core.promql.parser.lexer import (
    AGGREGATORS,
    PREPROCESSORS,
    Lexer,
    T,
    Token,
    describe,
    unquote,
)
from thanostools.core.timeutil import INT64_MAX, MS_NS, prom_duration_ns

__all__ = ["parse_duration", "parse_expr", "parse_number", "parse_selector"]

GO_NAN = float_from_bits(0x7FF8000000000001)  # what Go's ParseFloat("NaN") returns

# Deeper trees are refused: the checker, the evaluator and the printers recurse once per level, and
# this depth leaves them room under Python's default recursion limit. Chains of left operands
# (`a + b + c ...`) are not nested and have no limit.
MAX_NESTING_DEPTH = 128

_PRECEDENCE: dict[T, int] = {
    T.LOR: 1,
    T.LAND: 2, T.LUNLESS: 2,
    T.EQLC: 3, T.NEQ: 3, T.LTE: 3, T.LSS: 3, T.GTE: 3, T.GTR: 3, T.TRIM_UPPER: 3, T.TRIM_LOWER: 3,
    T.ADD: 4, T.SUB: 4,
    T.MUL: 5, T.DIV: 5, T.MOD: 5, T.ATAN2: 5,
    T.POW: 6,
}
_POW_PREC = _PRECEDENCE[T.POW]

# Tokens that may stand for a metric name at the start of a selector.
_METRIC_NAME_TOKENS = frozenset({
    T.IDENTIFIER, T.METRIC_IDENTIFIER, T.BY, T.WITHOUT, T.LAND, T.LOR, T.LUNLESS, T.OFFSET,
    T.ANCHORED, T.SMOOTHED,
}) | AGGREGATORS | PREPROCESSORS
# Tokens accepted as a label name inside grouping parentheses.
_LABEL_TOKENS = _METRIC_NAME_TOKENS | {T.BOOL, T.GROUP_LEFT, T.GROUP_RIGHT, T.IGNORING, T.ON, T.ATAN2}
_MATCH_OPS = {
    T.EQL: MatchType.EQ, T.NEQ: MatchType.NEQ, T.EQL_REGEX: MatchType.RE, T.NEQ_REGEX: MatchType.NRE,
}
_CLOSING = frozenset({T.RIGHT_BRACE, T.RIGHT_PAREN, T.RIGHT_BRACKET, T.DURATION, T.NUMBER})
_MAX_DURATION_SECONDS = float(1 << 63) / 1e9
_PRECEDED = "must be preceded by an instant vector selector or range vector selector or a subquery"


class _Fail(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _fail(message: str, pos: int) -> NoReturn:
    raise _Fail(message, pos)


def _to_parse_error(text: str, exc: _Fail) -> ParseError:
    pos = max(0, min(exc.pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return ParseError(exc.message, position=pos, line=line, column=column)


# ---------------------------------------------------------------------------------------------
# Public API.


def parse_expr(text: str, *, features: frozenset[str] = PROMQL_FEATURES) -> Expr:
    """Parse and type-check a PromQL expression; ``features`` are the ``--enable-feature`` names enabled."""
    try:
        return _Parser(text, features).parse_expression()
    except _Fail as exc:
        raise _to_parse_error(text, exc) from None


def parse_selector(text: str) -> list[Matcher]:
    """Matchers of a series selector such as ``up{job="x"}`` (the name becomes ``__name__``)."""
    try:
        return _Parser(text, PROMQL_FEATURES).parse_selector_only()
    except _Fail as exc:
        raise _to_parse_error(text, exc) from None


def parse_duration(text: str) -> int:
    """A Prometheus duration (``1h30m``, ``500ms``, ``0``) in milliseconds."""
    try:
        return prom_duration_ns(text) // 1_000_000
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def parse_number(text: str) -> float:
    """A number as Prometheus reads it (Go ``ParseInt(s, 0, 64)``, else ``ParseFloat``)."""
    as_int = _go_parse_int(text)
    if as_int is not None:
        return float(as_int)
    return _go_parse_float(text)


# ---------------------------------------------------------------------------------------------
# Durations and numbers.



def _underscore_ok(s: str) -> bool:
    """Go's rule: underscores only between digits (or after a base prefix)."""
    saw = "^"
    if s[:1] in ("+", "-"):
        s = s[1:]
    i, hexa = 0, False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if c.isdigit() or (hexa and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _go_parse_int(s: str) -> int | None:
    body, negative = s, False
    if body[:1] in ("+", "-"):
        negative, body = body[0] == "-", body[1:]
    base = 10
    prefix = body[:2].lower()
    if prefix in ("0x", "0b", "0o"):
        base, body = {"0x": 16, "0b": 2, "0o": 8}[prefix], body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, body = 8, body[1:]
    if "_" in body and not _underscore_ok(s):
        return None
    body = body.replace("_", "")
    try:
        value = int(body, base) if body.isascii() and body.isalnum() else None
    except ValueError:
        return None
    if value is None:
        return None
    value = -value if negative else value
    return value if -(1 << 63) <= value <= INT64_MAX else None


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")


def _go_parse_float(s: str) -> float:
    invalid = ValueError(f"strconv.ParseFloat: parsing {go_quote(s)}: invalid syntax")
    body = s
    if "_" in body:
        if not _underscore_ok(body):
            raise invalid
        body = body.replace("_", "")
    lowered = body.lower()
    if lowered in ("inf", "+inf", "infinity", "+infinity"):
        return math.inf
    if lowered in ("-inf", "-infinity"):
        return -math.inf
    if lowered == "nan":
        return GO_NAN
    if _HEX_FLOAT.fullmatch(body):
        value = float.fromhex(body)
    elif _DECIMAL.fullmatch(body):
        value = float(body)
    else:
        raise invalid
    if math.isinf(value):
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(s)}: value out of range")
    return value


def _go_round(x: float) -> int:
    """Go ``math.Round``: halves away from zero."""
    t = math.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1 if x > 0 else -1
    return int(t)


def _ns_to_ms(ns: int) -> int:
    """Truncating conversion, like Go's integer division."""
    return ns // MS_NS if ns >= 0 else -(-ns // MS_NS)


def _valid_label_name(name: str) -> bool:
    return name != "" and not any(0xD800 <= ord(c) <= 0xDFFF for c in name)


# ---------------------------------------------------------------------------------------------
# The parser.


class _Parser:
    def __init__(self, text: str, features: frozenset[str]) -> None:
        self.text = text
        self.lexer = Lexer(text)
        self.buf: list[Token] = []
        self.features = features
        self.last_closing = 0
        self.depth = 0

    # --- token stream ----------------------------------------------------------------------

    def peek(self, k: int = 0) -> Token:
        while len(self.buf) <= k:
            tok = self.lexer.next_token()
            if tok.kind is not T.COMMENT:
                self.buf.append(tok)
        return self.buf[k]

    def advance(self) -> Token:
        tok = self.peek()
        del self.buf[0]
        if tok.kind in _CLOSING:
            self.last_closing = tok.pos + len(tok.val)
        return tok

    def expect(self, kind: T, context: str = "", expected: str = "") -> Token:
        if self.peek().kind is not kind:
            self.unexpected(self.peek(), context, expected)
        return self.advance()

    def unexpected(self, tok: Token, context: str = "", expected: str = "") -> NoReturn:
        if tok.kind is T.ERROR:
            _fail(tok.val, tok.pos)
        msg = "unexpected " + describe(tok)
        if context:
            msg += " in " + context
        if expected:
            msg += ", expected " + expected
        _fail(msg, tok.pos)

    # --- entry points ----------------------------------------------------------------------

    def parse_expression(self) -> Expr:
        if self.peek().kind is T.EOF:
            _fail("no expression found in input", 0)
        expr = self.expr(0)
        if self.peek().kind is not T.EOF:
            self.unexpected(self.peek())
        _Checker().check(expr)
        return expr

    def parse_selector_only(self) -> list[Matcher]:
        tok = self.peek()
        if tok.kind is T.LEFT_BRACE:
            vs = self.vector_selector(None)
        elif tok.kind in _METRIC_NAME_TOKENS:
            vs = self.vector_selector(self.advance())
        else:
            self.unexpected(tok)
        if self.peek().kind is not T.EOF:
            self.unexpected(self.peek())
        return list(vs.matchers)

    # --- expressions -----------------------------------------------------------------------

    def expr(self, min_prec: int) -> Expr:
        # Every nesting (parentheses, arguments, right operands, unary operands) passes here; chains
        # of left operands do not nest, so `a + b + ...` has no depth whatever its length.
        if self.depth > MAX_NESTING_DEPTH:
            _fail(f"expression nested too deeply: more than {MAX_NESTING_DEPTH} levels", self.peek().pos)
        self.depth += 1
        try:
            lhs = self.unary()
            while True:
                op_tok = self.peek()
                prec = _PRECEDENCE.get(op_tok.kind)
                if prec is None or prec < min_prec:
                    return lhs
                self.advance()
                return_bool, matching = self.binary_modifiers(lhs.pos)
                rhs = self.expr(prec if op_tok.kind is T.POW else prec + 1)
                lhs = _binary(op_tok, lhs, rhs, return_bool, matching)
        finally:
            self.depth -= 1

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind not in (T.ADD, T.SUB):
            return self.postfix(self.primary())
        self.advance()
        # A unary operator binds like '*': tighter than everything but '^'.
        operand = self.expr(_POW_PREC)
        op = tok.val
        if isinstance(operand, NumberLiteral):
            value = -operand.value if op == "-" else operand.value
            return replace(operand, value=value, pos=tok.pos)
        return UnaryExpr(op, operand, pos=tok.pos, end=operand.end)

    def binary_modifiers(self, binary_pos: int) -> tuple[bool, VectorMatching]:
        return_bool = False
        if self.peek().kind is T.BOOL:
            self.advance()
            return_bool = True
        if self.peek().kind not in (T.ON, T.IGNORING):
            return return_bool, self.fill_modifiers(VectorMatching(), binary_pos)
        on = self.advance().kind is T.ON
        labels = self.grouping_labels()
        card = Cardinality.ONE_TO_ONE
        include: tuple[str, ...] = ()
        if self.peek().kind in (T.GROUP_LEFT, T.GROUP_RIGHT):
            left = self.advance().kind is T.GROUP_LEFT
            card = Cardinality.MANY_TO_ONE if left else Cardinality.ONE_TO_MANY
            if self.peek().kind is T.LEFT_PAREN:
                include = self.grouping_labels()
        return return_bool, self.fill_modifiers(VectorMatching(card, labels, on, include), binary_pos)

    def fill_modifiers(self, matching: VectorMatching, binary_pos: int) -> VectorMatching:
        """``fill(v)`` | ``fill_left(v)`` [``fill_right(v)``] | ``fill_right(v)`` after the matching modifiers."""
        fills: dict[str, float] = {}
        while self.at_fill_modifier() and not ("fill" in fills or (fills and self.peek().val in (*fills, "fill"))):
            name = self.advance().val
            self.advance()
            fills[name] = self.fill_value()
            self.expect(T.RIGHT_PAREN, "fill modifier", '")"')
        if not fills:
            return matching
        if BINOP_FILL_MODIFIERS not in self.features:
            _fail("binop fill modifiers are experimental and not enabled", binary_pos)
        both = fills.get("fill")
        return replace(matching, fill_lhs=fills.get("fill_left", both), fill_rhs=fills.get("fill_right", both))

    def at_fill_modifier(self) -> bool:
        tok = self.peek()
        return tok.kind is T.IDENTIFIER and tok.val in _FILL_MODIFIERS and self.peek(1).kind is T.LEFT_PAREN

    def fill_value(self) -> float:
        tok = self.peek()
        negative = tok.kind is T.SUB
        if tok.kind in (T.ADD, T.SUB):
            self.advance()
            tok = self.peek()
        if tok.kind is not T.NUMBER:
            self.unexpected(tok, "fill modifier", "number")
        self.advance()
        value = self.number(tok)
        return -value if negative else value

    def postfix(self, expr: Expr) -> Expr:
        while True:
            tok = self.peek()
            if tok.kind is T.LEFT_BRACKET:
                expr = self.range_or_subquery(expr)
            elif tok.kind is T.OFFSET:
                expr = self.offset(expr)
            elif tok.kind is T.AT:
                expr = self.at(expr)
            elif tok.kind in (T.ANCHORED, T.SMOOTHED):
                self.advance()
                expr = self.set_extended(expr, tok.val.lower())
            else:
                return expr

    def primary(self) -> Expr:
        tok = self.peek()
        kind = tok.kind
        if kind is T.NUMBER:
            self.advance()
            return NumberLiteral(self.number(tok), pos=tok.pos, end=tok.pos + len(tok.val))
        if kind is T.DURATION:
            self.advance()
            seconds = self.duration_tok_ns(tok) / 1e9
            return NumberLiteral(seconds, True, pos=tok.pos, end=tok.pos + len(tok.val))
        if kind is T.STRING:
            self.advance()
            return StringLiteral(unquote(tok.val), pos=tok.pos, end=tok.pos + len(tok.val))
        if kind is T.LEFT_PAREN:
            self.advance()
            inner = self.expr(0)
            close = self.expect(T.RIGHT_PAREN)
            return ParenExpr(inner, pos=tok.pos, end=close.pos + 1)
        if kind is T.LEFT_BRACE:
            return self.vector_selector(None)
        if kind is T.IDENTIFIER and self.peek(1).kind is T.LEFT_PAREN:
            return self.call()
        if kind in AGGREGATORS and self.peek(1).kind in (T.LEFT_PAREN, T.BY, T.WITHOUT):
            return self.aggregate()
        if kind in PREPROCESSORS and self.peek(1).kind is T.LEFT_PAREN:
            return self.call()
        if kind in _METRIC_NAME_TOKENS:
            return self.vector_selector(self.advance())
        self.unexpected(tok)

    def number(self, tok: Token) -> float:
        try:
            return parse_number(tok.val)
        except ValueError as exc:
            _fail(f"error parsing number: {exc}", tok.pos)

    def duration_tok_ns(self, tok: Token) -> int:
        try:
            return prom_duration_ns(tok.val)
        except ValueError as exc:
            _fail(str(exc), tok.pos)

    # --- calls and aggregations ------------------------------------------------------------

    def call_args(self) -> tuple[tuple[Expr, ...], int]:
        self.expect(T.LEFT_PAREN)
        args: list[Expr] = []
        if self.peek().kind is T.RIGHT_PAREN:
            return (), self.advance().pos + 1
        while True:
            args.append(self.expr(0))
            tok = self.peek()
            if tok.kind is T.COMMA:
                self.advance()
                if self.peek().kind is T.RIGHT_PAREN:
                    _fail("trailing commas not allowed in function call args", tok.pos)
                continue
            if tok.kind is T.RIGHT_PAREN:
                return tuple(args), self.advance().pos + 1
            self.unexpected(tok)

    def call(self) -> Call:
        name_tok = self.advance()
        name = name_tok.val.lower() if name_tok.kind in PREPROCESSORS else name_tok.val
        args, end = self.call_args()
        fn = FUNCTIONS.get(name)
        if fn is None:
            _fail(f"unknown function with name {go_quote(name)}", name_tok.pos)
        if fn.experimental and EXPERIMENTAL_FUNCTIONS not in self.features:
            _fail(f"function {go_quote(name)} is not enabled", name_tok.pos)
        return Call(fn, args, pos=name_tok.pos, end=end)

    def aggregate(self) -> AggregateExpr:
        op_tok = self.advance()
        op = op_tok.val.lower()
        grouping: tuple[str, ...] = ()
        without = False
        if self.peek().kind in (T.BY, T.WITHOUT):
            without = self.advance().kind is T.WITHOUT
            grouping = self.grouping_labels()
            if self.peek().kind is not T.LEFT_PAREN:
                self.unexpected(self.peek(), "aggregation")
            args, end = self.call_args()
        else:
            args, end = self.call_args()
            if self.peek().kind in (T.BY, T.WITHOUT):
                without = self.advance().kind is T.WITHOUT
                grouping = self.grouping_labels()
                end = self.last_closing
        if not args:
            _fail("no arguments for aggregate expression provided", op_tok.pos)
        if AGGREGATIONS[op].experimental and EXPERIMENTAL_FUNCTIONS not in self.features:
            _fail(f"{op}() is experimental and must be enabled with "
                  "--enable-feature=promql-experimental-functions", op_tok.pos)
        wanted = 2 if op in PARAMETRIC_AGGREGATIONS else 1
        if len(args) != wanted:
            _fail("wrong number of arguments for aggregate expression provided, "
                  f"expected {wanted}, got {len(args)}", op_tok.pos)
        param = args[0] if wanted == 2 else None
        return AggregateExpr(op, args[-1], param, grouping, without, pos=op_tok.pos, end=end)

    def grouping_labels(self) -> tuple[str, ...]:
        self.expect(T.LEFT_PAREN, "grouping opts", '"("')
        labels: list[str] = []
        if self.peek().kind is T.RIGHT_PAREN:
            self.advance()
            return ()
        while True:
            tok = self.peek()
            if tok.kind in _LABEL_TOKENS:
                labels.append(self.advance().val)
            elif tok.kind is T.STRING:
                name = unquote(self.advance().val)
                if not _valid_label_name(name):
                    _fail(f"invalid label name for grouping: {go_quote(name)}", tok.pos)
                labels.append(name)
            else:
                self.unexpected(tok, "grouping opts", "label")
            tok = self.peek()
            if tok.kind is T.COMMA:
                self.advance()
                if self.peek().kind is T.RIGHT_PAREN:
                    self.advance()
                    return tuple(labels)
            elif tok.kind is T.RIGHT_PAREN:
                self.advance()
                return tuple(labels)
            else:
                self.unexpected(tok, "grouping opts", '"," or ")"')

    # --- selectors -------------------------------------------------------------------------

    def vector_selector(self, name_tok: Token | None) -> VectorSelector:
        start = name_tok.pos if name_tok is not None else self.peek().pos
        end = start + len(name_tok.val) if name_tok is not None else start
        matchers: list[Matcher] = []
        if self.peek().kind is T.LEFT_BRACE:
            self.advance()
            matchers = self.label_matchers()
            end = self.last_closing
        name = ""
        if name_tok is not None:
            name = name_tok.val
            matchers.append(Matcher(MatchType.EQ, "__name__", name))
        return VectorSelector(name, tuple(matchers), pos=start, end=end)

    def label_matchers(self) -> list[Matcher]:
        """The inside of ``{...}``, opening brace consumed."""
        matchers: list[Matcher] = []
        if self.peek().kind is T.RIGHT_BRACE:
            self.advance()
            return matchers
        while True:
            matchers.append(self.label_matcher())
            tok = self.peek()
            if tok.kind is T.COMMA:
                self.advance()
                if self.peek().kind is T.RIGHT_BRACE:
                    self.advance()
                    return matchers
            elif tok.kind is T.RIGHT_BRACE:
                self.advance()
                return matchers
            else:
                self.unexpected(tok, "label matching", '"," or "}"')

    def label_matcher(self) -> Matcher:
        tok = self.advance()
        if tok.kind is T.IDENTIFIER:
            name = tok.val
            if self.peek().kind not in _MATCH_OPS:
                self.unexpected(self.peek(), "label matching", "label matching operator")
        elif tok.kind is T.STRING:
            name = unquote(tok.val)
            if self.peek().kind not in _MATCH_OPS:
                return Matcher(MatchType.EQ, "__name__", name)  # {"metric.name", ...}
        else:
            self.unexpected(tok, "label matching", 'identifier or "}"')
        mtype = _MATCH_OPS[self.advance().kind]
        value_tok = self.expect(T.STRING, "label matching", "string")
        try:
            return Matcher(mtype, name, unquote(value_tok.val))
        except ParseError as exc:
            _fail(exc.reason, tok.pos)

    # --- postfix modifiers -----------------------------------------------------------------

    # Duration expressions: sums of products of (signed) powers of literals, step(), range(), min/max(a, b)
    # and parenthesised expressions; after an offset only a signed primary (arithmetic that follows belongs to
    # the enclosing expression: "x offset 5s - 8").

    def duration_value(self, context: str, expected: str, *, in_brackets: bool) -> tuple[int, DurationExpr | None]:
        """A range, subquery step (both must be positive) or offset: milliseconds, or the expression when it
        reads step()/range() (the engine computes it per query)."""
        start = self.peek().pos
        e = self._dur_sum(context, expected) if in_brackets else self._dur_unary(context, expected, primary=True)
        literal, negative = e, False
        while literal.op == "neg":
            literal, negative = literal.args[0], not negative
        if literal.op in ("lit", "dur"):
            return self._literal_ms(literal, negative, in_brackets, start), None
        if reads_query(e):
            return 0, e
        try:
            return to_ms(seconds(e), allow_negative=not in_brackets), None
        except ValueError as exc:
            _fail(str(exc), start)

    def _literal_ms(self, lit: DurationExpr, negative: bool, in_brackets: bool, start: int) -> int:
        ns = prom_duration_ns(lit.text) if lit.op == "dur" else 0
        secs = -lit.value if negative else lit.value
        if abs(secs) > _MAX_DURATION_SECONDS or math.isnan(secs):
            _fail("duration out of range", start)
        if in_brackets and not secs > 0:
            _fail("duration must be greater than 0", start)
        if ns == 0:
            return _ns_to_ms(_go_round(secs * 1e9))
        return _ns_to_ms(-ns if negative else ns)

    def _dur_sum(self, context: str, expected: str) -> DurationExpr:
        left = self._dur_product(context, expected)
        while self.peek().kind in (T.ADD, T.SUB):
            op = self.advance()
            left = DurationExpr(op.val, (left, self._dur_product(context, expected)), pos=left.pos)
        return left

    def _dur_product(self, context: str, expected: str) -> DurationExpr:
        left = self._dur_unary(context, expected)
        while self.peek().kind in (T.MUL, T.DIV, T.MOD):
            op = self.advance()
            left = DurationExpr(op.val, (left, self._dur_unary(context, expected)), pos=left.pos)
        return left

    def _dur_unary(self, context: str, expected: str, *, primary: bool = False) -> DurationExpr:
        tok = self.peek()
        if tok.kind in (T.ADD, T.SUB):
            self.advance()
            inner = self._dur_unary(context, expected, primary=primary)
            return DurationExpr("neg", (inner,), pos=tok.pos) if tok.kind is T.SUB else inner
        base = self._dur_primary(context, expected)
        if not primary and self.peek().kind is T.POW:
            self.advance()
            return DurationExpr("^", (base, self._dur_unary(context, expected)), pos=base.pos)
        return base

    def _dur_primary(self, context: str, expected: str) -> DurationExpr:
        tok = self.peek()
        if tok.kind is T.NUMBER:
            self.advance()
            value = self.number(tok)
            if abs(value) > _MAX_DURATION_SECONDS:
                _fail("duration out of range", tok.pos)
            return DurationExpr("lit", value=value, text=tok.val, pos=tok.pos)
        if tok.kind is T.DURATION:
            self.advance()
            return DurationExpr("dur", value=self.duration_tok_ns(tok) / 1e9, text=tok.val, pos=tok.pos)
        if tok.kind in (T.STEP, T.RANGE):
            self.advance()
            if self.peek().kind is not T.LEFT_PAREN:
                self.unexpected(self.peek(), context, expected)
            self.advance()
            self.expect(T.RIGHT_PAREN, context, '")"')
            return DurationExpr("step" if tok.kind is T.STEP else "range", pos=tok.pos)
        if tok.kind in (T.MIN, T.MAX) or (tok.kind is T.IDENTIFIER and tok.val in ("min_of", "max_of")):
            self.advance()
            self.expect(T.LEFT_PAREN, context, '"("')
            a = self._dur_sum(context, expected)
            self.expect(T.COMMA, context, '","')
            b = self._dur_sum(context, expected)
            self.expect(T.RIGHT_PAREN, context, '")"')
            return DurationExpr("min" if tok.val.startswith("min") else "max", (a, b), pos=tok.pos)
        if tok.kind is T.LEFT_PAREN:
            self.advance()
            inner = self._dur_sum(context, expected)
            self.expect(T.RIGHT_PAREN, context, '")"')
            return inner
        self.unexpected(tok, context, expected)

    def range_or_subquery(self, expr: Expr) -> Expr:
        bracket = self.advance()
        rng, rng_expr = self.duration_value("subquery or range selector", "number, duration, step(), or range()",
                                            in_brackets=True)
        tok = self.peek()
        if tok.kind is T.RIGHT_BRACKET:
            close = self.advance()
            problem = ""
            if not isinstance(expr, VectorSelector):
                problem = "ranges only allowed for vector selectors"
            elif expr.offset != 0:
                problem = "no offset modifiers allowed before range"
            elif expr.timestamp is not None:
                problem = "no @ modifiers allowed before range"
            if problem or not isinstance(expr, VectorSelector):
                _fail(problem, bracket.pos)
            return MatrixSelector(expr, rng, pos=expr.pos, end=close.pos + 1, range_expr=rng_expr)
        if tok.kind is not T.COLON:
            self.unexpected(tok, "subquery or range", '":" or "]"')
        self.advance()
        step, step_expr = 0, None
        if self.peek().kind is not T.RIGHT_BRACKET:
            step, step_expr = self.duration_value("subquery selector", 'number, duration, step(), range(), or "]"',
                                                  in_brackets=True)
        close = self.expect(T.RIGHT_BRACKET, "subquery selector", '"]"')
        return SubqueryExpr(expr, rng, step, pos=expr.pos, end=close.pos + 1, range_expr=rng_expr,
                            step_expr=step_expr)

    def offset(self, expr: Expr) -> Expr:
        self.advance()
        ms, ms_expr = self.duration_value("offset", "number, duration, step(), or range()", in_brackets=False)
        end = self.last_closing
        if isinstance(expr, VectorSelector):
            if expr.offset != 0 or expr.offset_expr is not None:
                _fail("offset may not be set multiple times", expr.pos)
            return replace(expr, offset=ms, end=end, offset_expr=ms_expr)
        if isinstance(expr, MatrixSelector):
            vs = expr.vector_selector
            if vs.offset != 0 or vs.offset_expr is not None:
                _fail("offset may not be set multiple times", expr.pos)
            return replace(expr, vector_selector=replace(vs, offset=ms, offset_expr=ms_expr), end=end)
        if isinstance(expr, SubqueryExpr):
            if expr.offset != 0 or expr.offset_expr is not None:
                _fail("offset may not be set multiple times", expr.pos)
            return replace(expr, offset=ms, end=end, offset_expr=ms_expr)
        _fail(f"offset modifier {_PRECEDED}", expr.pos)

    def at(self, expr: Expr) -> Expr:
        self.advance()
        tok = self.peek()
        timestamp: int | None = None
        preprocessor: StartOrEnd | None = None
        if tok.kind in (T.START, T.END):
            self.advance()
            self.expect(T.LEFT_PAREN, "@", "timestamp")
            self.expect(T.RIGHT_PAREN, "@", "timestamp")
            preprocessor = StartOrEnd.START if tok.kind is T.START else StartOrEnd.END
        else:
            seconds = self.signed_timestamp()
            if math.isinf(seconds) or math.isnan(seconds) or abs(seconds) >= float(1 << 63):
                _fail(f"timestamp out of bounds for @ modifier: {format_f6(seconds)}", expr.pos)
            timestamp = _go_round(seconds * 1000)
        return self.set_at(expr, timestamp, preprocessor)

    def signed_timestamp(self) -> float:
        """``[+-](number | duration)`` after ``@``, in seconds."""
        tok = self.peek()
        negative = tok.kind is T.SUB
        if tok.kind in (T.ADD, T.SUB):
            self.advance()
            tok = self.peek()
        if tok.kind not in (T.NUMBER, T.DURATION):
            self.unexpected(tok, "@", "timestamp")
        self.advance()
        value = self.duration_tok_ns(tok) / 1e9 if tok.kind is T.DURATION else self.number(tok)
        return -value if negative else value

    def set_extended(self, expr: Expr, modifier: str) -> Expr:
        """The ``anchored``/``smoothed`` modifier on an instant or range vector selector."""
        if EXTENDED_RANGE_SELECTORS not in self.features:
            _fail(f"{modifier} modifier is experimental and not enabled", expr.pos)
        if isinstance(expr, SubqueryExpr):
            _fail(f"{modifier} modifier is not supported for subqueries", expr.pos)
        vs = expr.vector_selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(vs, VectorSelector):
            _fail(f"{modifier} modifier not implemented", expr.pos)
        if vs.extended and vs.extended != modifier:
            _fail("anchored and smoothed modifiers cannot be used together", expr.pos)
        new_vs = replace(vs, extended=modifier)
        if isinstance(expr, MatrixSelector):
            return replace(expr, vector_selector=new_vs)
        return new_vs

    def set_at(self, expr: Expr, timestamp: int | None, preprocessor: StartOrEnd | None) -> Expr:
        end = self.last_closing
        if isinstance(expr, MatrixSelector):
            vs = expr.vector_selector
            if vs.timestamp is not None or vs.start_or_end is not None:
                _fail("@ <timestamp> may not be set multiple times", expr.pos)
            new_vs = replace(vs, timestamp=timestamp, start_or_end=preprocessor)
            return replace(expr, vector_selector=new_vs, end=end)
        if isinstance(expr, VectorSelector | SubqueryExpr):
            if expr.timestamp is not None or expr.start_or_end is not None:
                _fail("@ <timestamp> may not be set multiple times", expr.pos)
            return replace(expr, timestamp=timestamp, start_or_end=preprocessor, end=end)
        _fail(f"@ modifier {_PRECEDED}", expr.pos)


_FILL_MODIFIERS = ("fill", "fill_left", "fill_right")

_OP_NAMES = {
    T.ADD: "+", T.SUB: "-", T.MUL: "*", T.DIV: "/", T.MOD: "%", T.POW: "^", T.EQLC: "==",
    T.NEQ: "!=", T.LTE: "<=", T.LSS: "<", T.GTE: ">=", T.GTR: ">", T.LAND: "and", T.LOR: "or",
    T.LUNLESS: "unless", T.ATAN2: "atan2", T.TRIM_UPPER: "</", T.TRIM_LOWER: ">/",
}


def _binary(op_tok: Token, lhs: Expr, rhs: Expr, return_bool: bool, parsed: VectorMatching) -> BinaryExpr:
    op = _OP_NAMES[op_tok.kind]
    matching: VectorMatching | None = None
    if type_of(lhs) is ValueType.VECTOR and type_of(rhs) is ValueType.VECTOR:
        matching = parsed
        if op in SET_OPS and parsed.fills:
            _fail(f"fill modifiers are not allowed with the set operator {op}", lhs.pos)
        if op in SET_OPS and parsed.card is Cardinality.ONE_TO_ONE:
            matching = replace(parsed, card=Cardinality.MANY_TO_MANY)
    return BinaryExpr(op, lhs, rhs, return_bool, matching, parsed_matching=parsed,
                      pos=lhs.pos, end=rhs.end, op_pos=op_tok.pos)


# ---------------------------------------------------------------------------------------------
# Type checking (Prometheus' checkAST, first error wins).


class _Checker:
    def check(self, node: Expr, *, allow_empty_selector: bool = False) -> ValueType:
        # Single-child wrappers are unwound first so that long chains (``x[1m:][1m:]...``) need
        # no recursion; their rules then apply innermost first, as in Prometheus.
        wrappers: list[ParenExpr | UnaryExpr | SubqueryExpr] = []
        while isinstance(node, ParenExpr | UnaryExpr | SubqueryExpr):
            wrappers.append(node)
            node = node.expr
        t = self.check_core(node, allow_empty_selector)
        for wrapper in reversed(wrappers):
            if isinstance(wrapper, UnaryExpr) and t not in (ValueType.SCALAR, ValueType.VECTOR):
                _fail("unary expression only allowed on expressions of type scalar or instant vector, "
                      f"got {go_quote(t.documented)}", wrapper.pos)
            if isinstance(wrapper, SubqueryExpr) and t is not ValueType.VECTOR:
                _fail(f"subquery is only allowed on instant vector, got {t.value} instead", wrapper.pos)
            t = type_of(wrapper)
        return t

    def check_core(self, node: Expr, allow_empty_selector: bool) -> ValueType:
        if isinstance(node, AggregateExpr):
            self.check_aggregate(node)
        elif isinstance(node, BinaryExpr):
            self.check_binary(node)
        elif isinstance(node, Call):
            self.check_call(node)
        elif isinstance(node, MatrixSelector):
            self.check_selector(node.vector_selector, False)
        elif isinstance(node, VectorSelector):
            self.check_selector(node, allow_empty_selector)
        return type_of(node)

    def expect(self, node: Expr, want: ValueType, context: str) -> None:
        t = self.check(node)
        if t is not want:
            _fail(f"expected type {want.documented} in {context}, got {t.documented}", node.pos)

    def check_aggregate(self, node: AggregateExpr) -> None:
        self.expect(node.expr, ValueType.VECTOR, "aggregation expression")
        param_type = AGGREGATIONS[node.op].param_type
        if param_type is not None and node.param is not None:
            self.expect(node.param, param_type, "aggregation parameter")

    def check_binary(self, node: BinaryExpr) -> None:
        spine = node.left_spine()
        lt = self.check(spine[-1].lhs)
        for binary in reversed(spine):
            rt = self.check(binary.rhs)
            self.binary_rules(binary, lt, rt)
            lt = binary.value_type

    @staticmethod
    def binary_rules(node: BinaryExpr, lt: ValueType, rt: ValueType) -> None:
        op, vm = node.op, node.parsed_matching
        if node.return_bool and op not in COMPARISON_OPS:
            _fail("bool modifier can only be used on comparison operators", node.op_pos)
        if op in COMPARISON_OPS and not node.return_bool and lt is rt is ValueType.SCALAR:
            _fail("comparisons between scalars must use BOOL modifier", node.op_pos)
        card = vm.card
        if op in SET_OPS and card is Cardinality.ONE_TO_ONE:
            card = Cardinality.MANY_TO_MANY
        if vm.on:
            for label in vm.matching_labels:
                if label in vm.include:
                    msg = f"label {go_quote(label)} must not occur in ON and GROUP clause at once"
                    _fail(msg, node.op_pos)
        scalar_or_vector = (ValueType.SCALAR, ValueType.VECTOR)
        if lt not in scalar_or_vector:
            _fail("binary expression must contain only scalar and instant vector types", node.lhs.pos)
        if rt not in scalar_or_vector:
            _fail("binary expression must contain only scalar and instant vector types", node.rhs.pos)
        if lt is not ValueType.VECTOR or rt is not ValueType.VECTOR:
            if vm.matching_labels:
                _fail("vector matching only allowed between instant vectors", node.pos)
        elif op in SET_OPS and card in (Cardinality.ONE_TO_MANY, Cardinality.MANY_TO_ONE):
            _fail(f"no grouping allowed for {go_quote(op)} operation", node.pos)
        if ValueType.SCALAR in (lt, rt) and op in SET_OPS:
            _fail(f"set operator {go_quote(op)} not allowed in binary scalar expression", node.pos)

    def check_call(self, node: Call) -> None:
        fn, args = node.func, node.args
        name = go_quote(fn.name)
        declared, got = len(fn.arg_types), len(args)
        if fn.variadic == 0:
            if declared != got:
                _fail(f"expected {declared} argument(s) in call to {name}, got {got}", node.pos)
        elif declared - 1 > got:
            _fail(f"expected at least {declared - 1} argument(s) in call to {name}, got {got}", node.pos)
        elif fn.variadic > 0 and declared - 1 + fn.variadic < got:
            _fail(f"expected at most {declared - 1 + fn.variadic} argument(s) in call to {name}, got {got}",
                  node.pos)
        label_selector_arg = fn.name == "info" and len(args) > 1 and self.check_info_selector(node)
        for i, arg in enumerate(args):
            if i >= declared and fn.variadic == 0:
                break
            want = fn.arg_type(i)
            t = self.check(arg, allow_empty_selector=label_selector_arg and i == 1)
            if t is not want:
                msg = f"expected type {want.documented} in call to function {name}, got {t.documented}"
                _fail(msg, arg.pos)

    @staticmethod
    def check_info_selector(node: Call) -> bool:
        arg = node.args[1]
        t = type_of(arg)
        if t is not ValueType.VECTOR:
            _fail(f'expected type instant vector in call to function "info", got {t.documented}', node.pos)
        if not isinstance(arg, VectorSelector):
            _fail("expected label selectors only", arg.pos)
        if arg.name:
            _fail("expected label selectors only, got vector selector instead", arg.pos)
        return True

    @staticmethod
    def check_selector(node: VectorSelector, allow_empty: bool) -> None:
        if node.name:
            for m in node.matchers[:-1]:
                if m.name == "__name__":
                    _fail(f"metric name must not be set twice: {go_quote(node.name)} or {go_quote(m.value)}",
                          node.pos)
            return
        if not allow_empty and all(m.matches_empty for m in node.matchers):
            _fail("vector selector must contain at least one non-empty matcher", node.pos)
