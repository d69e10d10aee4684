"""Parser for Prometheus' promqltest script language (the ``*.test`` conformance scripts).

It turns a script into commands (:class:`LoadCmd`, :class:`ClearCmd`, :class:`EvalCmd`); running
them is the evaluator's job. Float values are kept as IEEE-754 bit patterns so that NaN payloads
survive (``stale`` is Prometheus' StaleNaN, ``NaN`` is Go's ``math.NaN()``). Native histogram
samples (``{{...}}``) are recognised and kept as text, not decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import FormatError, ParseError
from thanostools.core.labels import METRIC_NAME, Labels, from_pairs
from thanostools.core.promql.parser.ast import Expr, float_bits
from thanostools.core.promql.parser.lexer import WORDS, Lexer, T, Token, unquote
from thanostools.core.promql.parser.parse import parse_duration, parse_expr, parse_number

__all__ = [
    "NAN_BITS", "ClearCmd", "Command", "EvalCmd", "Expectation",
    "ExpectedSeries", "HistogramRef", "LoadCmd", "RangeVectorSpec", "Sample", "ScriptError",
    "SeqValue", "parse_file", "parse_script", "parse_series_line",
]

NAN_BITS = 0x7FF8000000000001


class ScriptError(FormatError):
    """A promqltest script that does not follow the language. ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True)
class HistogramRef:
    """A native histogram sample as written: ``base`` + ``index`` × (``sign`` ``delta``).

    ``base``/``delta`` are the texts between ``{{`` and ``}}``; ``delta`` is None unless the
    sample came from a ``{{a}}+{{b}}xN`` or ``{{a}}-{{b}}xN`` item.
    """

    base: str
    delta: str | None = None
    sign: int = 1
    index: int = 0


class SeqValue(NamedTuple):
    """One step of a value sequence: a float (bits), a histogram, or omitted (``_``)."""

    value_bits: int | None
    histogram: HistogramRef | None = None

    @property
    def omitted(self) -> bool:
        return self.value_bits is None and self.histogram is None

    @property
    def is_histogram(self) -> bool:
        return self.histogram is not None


class Sample(NamedTuple):
    """A loaded sample: timestamp, float bits (None for histograms), histogram flag."""

    t_ms: int
    value_bits: int | None
    is_histogram: bool
    histogram: HistogramRef | None = None


@dataclass
class LoadCmd:
    interval_ms: int
    series: list[tuple[Labels, list[Sample]]]
    line: int
    with_nhcb: bool = False


@dataclass
class ClearCmd:
    line: int


@dataclass(frozen=True)
class Expectation:
    """An ``expect`` line: kind is fail, warn, no_warn, info, no_info or ordered."""

    kind: str
    message: str | None = None
    regex: str | None = None


@dataclass(frozen=True)
class ExpectedSeries:
    labels: Labels
    values: tuple[SeqValue, ...]
    index: int  # position among the expected result lines (for ordered results)


class RangeVectorSpec(NamedTuple):
    start_ms: int
    end_ms: int
    step_ms: int


@dataclass
class EvalCmd:
    kind: str  # "instant" or "range"
    expr_text: str
    line: int
    start_ms: int
    end_ms: int
    step_ms: int  # 0 for instant queries
    expr: Expr | None = None
    expectations: list[Expectation] = field(default_factory=list)
    expected_series: list[ExpectedSeries] = field(default_factory=list)
    expected_scalar_bits: int | None = None
    expected_string: str | None = None
    range_vector: RangeVectorSpec | None = None

    def expecting(self, kind: str) -> list[Expectation]:
        return [e for e in self.expectations if e.kind == kind]

    @property
    def expect_fail(self) -> bool:
        return bool(self.expecting("fail"))

    @property
    def ordered(self) -> bool:
        return bool(self.expecting("ordered"))

    @property
    def is_instant(self) -> bool:
        return self.kind == "instant"


Command = LoadCmd | ClearCmd | EvalCmd


# ---------------------------------------------------------------------------------------------
# Script level.

_SPACE = re.compile(r"[\t ]+")
_LOAD = re.compile(r"^load(?:_(with_nhcb))?\s+(.+?)$")
_EVAL_INSTANT = re.compile(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
_EVAL_RANGE = re.compile(
    r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$")
_EXPECT = re.compile(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
_EXPECT_RANGE = re.compile(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
_STRING_PREFIX = "expect string"


def parse_file(path: str | Path, *, parse_exprs: bool = True) -> list[Command]:
    return parse_script(Path(path).read_text(encoding="utf-8"), parse_exprs=parse_exprs)


def parse_script(text: str, *, parse_exprs: bool = True) -> list[Command]:
    """Commands of a script. With ``parse_exprs`` every eval expression is parsed (as
    Prometheus does when it loads a script) and kept in :attr:`EvalCmd.expr`."""
    return _Script(text, parse_exprs).commands()


class _Script:
    def __init__(self, text: str, parse_exprs: bool) -> None:
        self.lines = ["" if ln.strip().startswith("#") else ln.strip() for ln in text.split("\n")]
        self.parse_exprs = parse_exprs
        self.i = 0

    def commands(self) -> list[Command]:
        out: list[Command] = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line:
                word = _SPACE.split(line, maxsplit=1)[0].lower()
                if word == "clear":
                    out.append(ClearCmd(self.i + 1))
                elif word.startswith("load"):
                    out.append(self.load())
                elif word.startswith("eval"):
                    out.append(self.eval())
                else:
                    raise ScriptError(f"invalid command {line!r}", self.i + 1)
            self.i += 1
        return out

    def block(self) -> Iterator[tuple[int, str]]:
        """The lines after the current one, up to the next blank (or comment) line; lines are
        consumed only as the caller takes them."""
        while self.i + 1 < len(self.lines) and self.lines[self.i + 1]:
            self.i += 1
            yield self.i + 1, self.lines[self.i]

    def duration(self, text: str, what: str, line: int) -> int:
        try:
            return parse_duration(text)
        except ParseError as exc:
            raise ScriptError(f"invalid {what} {text!r}: {exc.reason}", line) from None

    def load(self) -> LoadCmd:
        line_no = self.i + 1
        m = _LOAD.match(self.lines[self.i])
        if m is None:
            raise ScriptError("invalid load command. (load[_with_nhcb] <step:duration>)", line_no)
        interval = self.duration(m.group(2), "step definition", line_no)
        series: dict[Labels, list[Sample]] = {}
        for no, text in self.block():
            labels, values = _series_or_raise(text, no)
            samples = [
                Sample(i * interval, v.value_bits, v.histogram is not None, v.histogram)
                for i, v in enumerate(values) if not v.omitted
            ]
            series[labels] = samples
        return LoadCmd(interval, list(series.items()), line_no, with_nhcb=m.group(1) is not None)

    def eval(self) -> EvalCmd:
        cmd, modifier = self.eval_header()
        fail_message: str | None = None
        fail_regex: str | None = None
        expect_index = 0
        for no, text in self.block():
            expect_index += 1
            if modifier == "fail" and text.startswith("expected_fail_message"):
                fail_message = text.removeprefix("expected_fail_message").strip()
                break
            if modifier == "fail" and text.startswith("expected_fail_regexp"):
                fail_regex = text.removeprefix("expected_fail_regexp").strip()
                break
            if text.startswith("expect range vector"):
                cmd.range_vector = self.range_vector(text, no)
                continue
            if text.startswith(_STRING_PREFIX):
                cmd.expected_string = _expected_string(text, no)
                continue
            if text.split(" ")[0] == "expect":
                cmd.expectations.append(_expectation(text, no))
                _validate_expectations(cmd, no)
                expect_index -= 1
                continue
            scalar = _number_or_none(text)
            if scalar is not None:
                cmd.expected_scalar_bits = scalar
                break
            labels, values = _series_or_raise(text, no)
            if len(values) > 1 and cmd.is_instant and cmd.range_vector is None:
                raise ScriptError("expecting multiple values in instant evaluation not allowed. consider "
                                  "using 'expect range vector' directive to enable a range vector result "
                                  "for an instant query", no)
            cmd.expected_series.append(ExpectedSeries(labels, tuple(values), expect_index))
        if modifier is not None:
            cmd.expectations.insert(0, Expectation(modifier, fail_message, fail_regex))
        return cmd

    def eval_header(self) -> tuple[EvalCmd, str | None]:
        line_no = self.i + 1
        line = self.lines[self.i]
        inst = _EVAL_INSTANT.match(line)
        rng = _EVAL_RANGE.match(line)
        if inst is None and rng is None:
            raise ScriptError("invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] "
                              "instant [at <offset:duration>] <query>' or 'eval[_fail|_warn] range from "
                              "<from> to <to> step <step> <query>'", line_no)
        if inst is not None:
            expr_text = inst.group(3)
            at = self.duration(inst.group(2) or "", "timestamp definition", line_no)
            cmd = EvalCmd("instant", expr_text, line_no, at, at, 0)
            modifier = inst.group(1)
        else:
            assert rng is not None
            expr_text = rng.group(5)
            start, end, step = self.range_times(rng.group(2), rng.group(3), rng.group(4), line_no)
            cmd = EvalCmd("range", expr_text, line_no, start, end, step)
            modifier = rng.group(1)
        if self.parse_exprs:
            try:
                cmd.expr = parse_expr(expr_text)
            except ParseError as exc:
                column = line.find(expr_text) + (exc.column or 1)
                raise ScriptError(f"{column}: parse error: {exc.reason}", line_no) from None
        return cmd, modifier

    def range_times(self, start: str, end: str, step: str, line_no: int) -> tuple[int, int, int]:
        start_ms = self.duration(start, "start timestamp definition", line_no)
        end_ms = self.duration(end, "end timestamp definition", line_no)
        if end_ms < start_ms:
            raise ScriptError(f"invalid test definition, end timestamp ({end}) is before start "
                              f"timestamp ({start})", line_no)
        return start_ms, end_ms, self.duration(step, "step definition", line_no)

    def range_vector(self, text: str, line_no: int) -> RangeVectorSpec:
        m = _EXPECT_RANGE.match(text)
        if m is None:
            raise ScriptError(f"invalid range vector definition {text!r}", line_no)
        return RangeVectorSpec(*self.range_times(m.group(1), m.group(2), m.group(3), line_no))


def _expectation(text: str, line_no: int) -> Expectation:
    m = _EXPECT.match(text.strip())
    if m is None:
        raise ScriptError("invalid expect statement, must match "
                          "`expect <type> <match_type>: <string>` format", line_no)
    kind, how, arg = m.group(1), m.group(2), m.group(3)
    if how == "msg":
        return Expectation(kind, message=arg.strip())
    if how == "regex":
        return Expectation(kind, regex=arg.strip())
    return Expectation(kind)


def _validate_expectations(cmd: EvalCmd, line_no: int) -> None:
    kinds = [e.kind for e in cmd.expectations]
    if "info" in kinds and "no_info" in kinds:
        raise ScriptError("invalid expect lines, info and no_info cannot be used together", line_no)
    if "warn" in kinds and "no_warn" in kinds:
        raise ScriptError("invalid expect lines, warn and no_warn cannot be used together", line_no)
    if kinds.count("fail") > 1:
        raise ScriptError("invalid expect lines, multiple expect fail lines are not allowed", line_no)


def _expected_string(text: str, line_no: int) -> str:
    literal = text.removeprefix(_STRING_PREFIX + " ")
    if text == _STRING_PREFIX or not literal:
        raise ScriptError("expected string literal not valid - a quoted string literal is required", line_no)
    tok = Lexer(literal).next_token()
    if tok.kind is not T.STRING or tok.pos != 0 or len(tok.val) != len(literal):
        raise ScriptError("expected string literal not valid - check that the string is correctly quoted",
                          line_no)
    return unquote(tok.val)


def _number_or_none(text: str) -> int | None:
    try:
        return float_bits(parse_number(text))
    except (ValueError, IndexError):
        return None


def _series_or_raise(text: str, line_no: int) -> tuple[Labels, list[SeqValue]]:
    try:
        return parse_series_line(text)
    except ValueError as exc:
        raise ScriptError(f"invalid series {text!r}: {exc}", line_no) from None


# ---------------------------------------------------------------------------------------------
# Series descriptions: ``metric{labels} values...``.

_METRIC_WORD_KINDS = frozenset(k for k in WORDS.values() if k is not T.NUMBER) | {
    T.IDENTIFIER, T.METRIC_IDENTIFIER,
}
_EXPONENT = r"(?:[eE][+-]?[0-9_]+)?"
_NUM = rf"(?:[0-9][0-9_]*(?:\.[0-9_]*)?{_EXPONENT}|\.[0-9][0-9_]*{_EXPONENT}|[iI][nN][fF]|[nN][aA][nN])"
_VALUE_ITEM = re.compile(rf"(?P<a>[+-]?{_NUM})(?:(?P<op>[+-])(?P<b>{_NUM}))?(?:x(?P<n>[0-9]+))?")
_BLANK_ITEM = re.compile(r"_(?:x(?P<n>[0-9]+))?")
_HIST_SUFFIX = re.compile(r"x([0-9]+)")


def parse_series_line(text: str) -> tuple[Labels, list[SeqValue]]:
    """A series description: its labels and its value sequence (raises ValueError)."""
    labels, rest = _parse_metric(text)
    return labels, _parse_values(text, rest)


def _parse_metric(text: str) -> tuple[Labels, int]:
    lexer = Lexer(text)
    tok = lexer.next_token()
    pairs: list[tuple[str, str]] = []
    name: str | None = None
    if tok.kind in _METRIC_WORD_KINDS:
        name = tok.val
        end = tok.pos + len(tok.val)
        if not text.startswith("{", end):
            return from_pairs([(METRIC_NAME, name)]), end
        tok = lexer.next_token()
    if tok.kind is not T.LEFT_BRACE:
        raise ValueError(f"unexpected {tok.val!r} in series description")
    end = _parse_label_set(lexer, pairs)
    if name is not None:
        pairs.append((METRIC_NAME, name))
    return from_pairs(pairs), end


def _parse_label_set(lexer: Lexer, pairs: list[tuple[str, str]]) -> int:
    """Labels inside ``{...}`` (opening brace consumed); returns the offset after ``}``."""
    tok = lexer.next_token()
    while tok.kind is not T.RIGHT_BRACE:
        if tok.kind not in (T.STRING, T.IDENTIFIER):
            raise ValueError(_unexpected(tok, "label set"))
        quoted = tok.kind is T.STRING
        name = unquote(tok.val) if quoted else tok.val
        tok = lexer.next_token()
        if tok.kind is T.EQL:
            value = lexer.next_token()
            if value.kind is not T.STRING:
                raise ValueError(_unexpected(value, "label set"))
            pairs.append((name, unquote(value.val)))
            tok = lexer.next_token()
        elif quoted:  # {"metric.name", ...}
            pairs.append((METRIC_NAME, name))
        else:
            raise ValueError(_unexpected(tok, "label set"))
        if tok.kind is T.COMMA:
            tok = lexer.next_token()
        elif tok.kind is not T.RIGHT_BRACE:
            raise ValueError(_unexpected(tok, "label set"))
    return tok.pos + 1


def _unexpected(tok: Token, where: str) -> str:
    return tok.val if tok.kind is T.ERROR else f"unexpected {tok.val or 'end of input'!r} in {where}"


def _parse_values(text: str, pos: int) -> list[SeqValue]:
    out: list[SeqValue] = []
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n:
            return out
        if text.startswith("{{", pos):
            pos = _histogram_item(text, pos, out)
            continue
        end = pos
        while end < n and text[end] not in " \t":
            end += 1
        out.extend(_value_item(text[pos:end]))
        pos = end


def _value_item(item: str) -> list[SeqValue]:
    blank = _BLANK_ITEM.fullmatch(item)
    if blank is not None:
        return [SeqValue(None)] * (int(blank["n"]) if blank["n"] else 1)
    if item == "stale":
        return [SeqValue(STALE_NAN_BITS)]
    m = _VALUE_ITEM.fullmatch(item)
    if m is None or (m["op"] and not m["n"]):
        raise ValueError(f"bad series value {item!r}")
    value = _signed(m["a"])
    if not m["n"]:
        return [SeqValue(float_bits(value))]
    if not m["op"]:
        return [SeqValue(float_bits(value))] * (int(m["n"]) + 1)
    step = parse_number(m["b"])
    step = -step if m["op"] == "-" else step
    out = []
    for _ in range(int(m["n"]) + 1):
        out.append(SeqValue(float_bits(value)))
        value += step
    return out


def _signed(text: str) -> float:
    if text[0] in "+-":
        value = parse_number(text[1:])
        return -value if text[0] == "-" else value
    return parse_number(text)


def _histogram_item(text: str, pos: int, out: list[SeqValue]) -> int:
    base, pos = _histogram_body(text, pos)
    count, delta, sign = 0, None, 1
    if pos < len(text) and text[pos] in "+-" and text.startswith("{{", pos + 1):
        sign = -1 if text[pos] == "-" else 1
        delta, pos = _histogram_body(text, pos + 1)
        m = _HIST_SUFFIX.match(text, pos)
        if m is None:
            raise ValueError("expected x<count> after histogram increment")
        count, pos = int(m.group(1)), m.end()
        out.extend(SeqValue(None, HistogramRef(base, delta, sign, i)) for i in range(count + 1))
        return pos
    m = _HIST_SUFFIX.match(text, pos)
    if m is not None:
        count, pos = int(m.group(1)), m.end()
    out.extend([SeqValue(None, HistogramRef(base))] * (count + 1))
    return pos


def _histogram_body(text: str, pos: int) -> tuple[str, int]:
    end = text.find("}}", pos + 2)
    if end < 0:
        raise ValueError("unterminated histogram description")
    return text[pos + 2:end].strip(), end + 2
