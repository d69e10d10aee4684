"""PromQL syntax tree.

Nodes are frozen dataclasses. ``pos``/``end`` are 0-based character offsets into the query
and take no part in equality, so two parses of equivalent text compare equal. Durations,
offsets and ``@`` timestamps are integer milliseconds.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from thanostools.core.matchers import Matcher

if TYPE_CHECKING:
    from thanostools.core.promql.parser.functions import Function


class ValueType(enum.Enum):
    NONE = "none"
    SCALAR = "scalar"
    VECTOR = "vector"
    MATRIX = "matrix"
    STRING = "string"

    @property
    def documented(self) -> str:
        """The name used in user-facing messages ("instant vector", "range vector", ...)."""
        return _DOCUMENTED[self]


_DOCUMENTED = {
    ValueType.NONE: "none",
    ValueType.SCALAR: "scalar",
    ValueType.VECTOR: "instant vector",
    ValueType.MATRIX: "range vector",
    ValueType.STRING: "string",
}


class Cardinality(enum.Enum):
    ONE_TO_ONE = "one-to-one"
    MANY_TO_ONE = "many-to-one"
    ONE_TO_MANY = "one-to-many"
    MANY_TO_MANY = "many-to-many"


class StartOrEnd(enum.Enum):
    """The ``@ start()`` / ``@ end()`` preprocessors."""

    START = "start"
    END = "end"


ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
COMPARISON_OPS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
SET_OPS = frozenset({"and", "or", "unless"})
TRIM_OPS = frozenset({"</", ">/"})  # native-histogram trimming (Prometheus 3.11)
BINARY_OPS = ARITHMETIC_OPS | COMPARISON_OPS | SET_OPS | TRIM_OPS
AGGREGATION_OPS = frozenset({
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
    "count_values", "quantile", "limitk", "limit_ratio",
})
PARAMETRIC_AGGREGATIONS = frozenset({"topk", "bottomk", "count_values", "quantile", "limitk", "limit_ratio"})


def float_bits(value: float) -> int:
    """IEEE-754 bit pattern of a float (distinguishes NaN payloads and -0)."""
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def float_from_bits(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


_CANONICAL_NAN_BITS = 0x7FF8000000000001


@dataclass(frozen=True)
class NumberLiteral:
    """A float literal; ``is_duration`` when written as a duration (``5m``), which only changes
    how it is printed. Equality compares bit patterns (so -0 != 0) but treats all NaNs alike."""

    value: float = field(compare=False)
    is_duration: bool = False
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    key: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        key = _CANONICAL_NAN_BITS if math.isnan(self.value) else float_bits(self.value)
        object.__setattr__(self, "key", key)

    @property
    def bits(self) -> int:
        """The exact IEEE-754 bit pattern of the value."""
        return float_bits(self.value)


@dataclass(frozen=True)
class StringLiteral:
    value: str
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class DurationExpr:
    """A duration expression (``[5m * 2]``, ``offset (1h + step())``) in seconds, kept in the tree only when it
    reads ``step()`` or ``range()``, which the query fixes: ``op`` is ``lit``/``dur`` (a number/duration: ``value``
    seconds), ``step``, ``range``,
    ``neg``, ``+ - * / % ^`` or ``min``/``max`` over ``args``. The engine resolves it before evaluating."""

    op: str
    args: tuple[DurationExpr, ...] = ()
    value: float = 0.0
    text: str = ""  # a literal as written
    _: KW_ONLY
    pos: int = field(default=0, compare=False)


ANCHORED = "anchored"
SMOOTHED = "smoothed"


@dataclass(frozen=True)
class VectorSelector:
    """``name{matchers} @ t offset o``. ``matchers`` includes ``__name__="name"`` (last) when
    the name was given outside the braces; equality ignores matcher order."""

    name: str
    matchers: tuple[Matcher, ...] = field(compare=False)
    offset: int = 0
    timestamp: int | None = None
    start_or_end: StartOrEnd | None = None
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    offset_expr: DurationExpr | None = None
    extended: str = ""  # ANCHORED or SMOOTHED (promql-extended-range-selectors), else ""
    matcher_key: tuple[tuple[str, str, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        key = tuple(sorted((m.name, m.type.value, m.value) for m in self.matchers))
        object.__setattr__(self, "matcher_key", key)


@dataclass(frozen=True)
class MatrixSelector:
    """``selector[range]``; offset and ``@`` live on the inner selector."""

    vector_selector: VectorSelector
    range: int
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    range_expr: DurationExpr | None = None


@dataclass(frozen=True)
class SubqueryExpr:
    """``expr[range:step] @ t offset o``; ``step`` 0 means the default resolution."""

    expr: Expr
    range: int
    step: int = 0
    offset: int = 0
    timestamp: int | None = None
    start_or_end: StartOrEnd | None = None
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    range_expr: DurationExpr | None = None
    step_expr: DurationExpr | None = None
    offset_expr: DurationExpr | None = None


@dataclass(frozen=True)
class ParenExpr:
    expr: Expr
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    value_type: ValueType = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_type", type_of(self.expr))


@dataclass(frozen=True)
class UnaryExpr:
    op: str  # "+" or "-"
    expr: Expr
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    value_type: ValueType = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_type", type_of(self.expr))


@dataclass(frozen=True)
class VectorMatching:
    card: Cardinality = Cardinality.ONE_TO_ONE
    matching_labels: tuple[str, ...] = ()
    on: bool = False
    include: tuple[str, ...] = ()
    fill_lhs: float | None = None  # fill_left(v) / fill(v): the value for a missing left-hand side
    fill_rhs: float | None = None  # fill_right(v) / fill(v): the value for a missing right-hand side

    @property
    def fills(self) -> bool:
        return self.fill_lhs is not None or self.fill_rhs is not None


@dataclass(frozen=True)
class BinaryExpr:
    """``lhs op [bool] [on|ignoring (...)] [group_left|group_right (...)] rhs``.

    ``matching`` is None unless both sides are instant vectors (as in Prometheus); set
    operators always match many-to-many. ``parsed_matching`` keeps the modifiers as written,
    for type checking.
    """

    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None
    _: KW_ONLY
    parsed_matching: VectorMatching = field(default=VectorMatching(), compare=False, repr=False)
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)
    op_pos: int = field(default=0, compare=False)
    value_type: ValueType = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        vector = ValueType.VECTOR in (type_of(self.lhs), type_of(self.rhs))
        object.__setattr__(self, "value_type", ValueType.VECTOR if vector else ValueType.SCALAR)

    def left_spine(self) -> list[BinaryExpr]:
        """This node and its chain of binary left operands, outermost first (long chains such
        as ``a or b or c ...`` are walked without recursion)."""
        spine = [self]
        while isinstance(spine[-1].lhs, BinaryExpr):
            spine.append(spine[-1].lhs)
        return spine


@dataclass(frozen=True)
class AggregateExpr:
    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    func: Function
    args: tuple[Expr, ...] = ()
    _: KW_ONLY
    pos: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


Expr: TypeAlias = (
    NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | SubqueryExpr | ParenExpr
    | UnaryExpr | BinaryExpr | AggregateExpr | Call
)


def type_of(node: Expr) -> ValueType:
    """The value type an expression evaluates to."""
    if isinstance(node, NumberLiteral):
        return ValueType.SCALAR
    if isinstance(node, StringLiteral):
        return ValueType.STRING
    if isinstance(node, VectorSelector | AggregateExpr):
        return ValueType.VECTOR
    if isinstance(node, MatrixSelector | SubqueryExpr):
        return ValueType.MATRIX
    if isinstance(node, ParenExpr | UnaryExpr | BinaryExpr):
        return node.value_type
    return node.func.return_type


def children(node: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions, in source order."""
    if isinstance(node, MatrixSelector):
        return (node.vector_selector,)
    if isinstance(node, SubqueryExpr | ParenExpr | UnaryExpr):
        return (node.expr,)
    if isinstance(node, BinaryExpr):
        return (node.lhs, node.rhs)
    if isinstance(node, AggregateExpr):
        return (node.expr,) if node.param is None else (node.param, node.expr)
    if isinstance(node, Call):
        return node.args
    return ()


def walk(node: Expr) -> list[Expr]:
    """All nodes of a tree, parents before children."""
    out: list[Expr] = []
    stack = [node]
    while stack:
        cur = stack.pop()
        out.append(cur)
        stack.extend(reversed(children(cur)))
    return out
