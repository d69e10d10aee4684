"""PromQL lexer.

A state machine that behaves like the Prometheus 3.x lexer, including its error messages,
because error texts and positions are part of what users see. Positions are 0-based
character offsets into the query. Tokens are produced lazily: a lexing error becomes an
``ERROR`` token at the point the parser reaches it, after which only ``EOF`` follows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import NamedTuple

from thanostools.core.goformat import go_quote, go_quote_rune


class T(enum.Enum):
    """Token kinds."""

    EOF = enum.auto()
    ERROR = enum.auto()
    COMMENT = enum.auto()
    IDENTIFIER = enum.auto()
    METRIC_IDENTIFIER = enum.auto()
    NUMBER = enum.auto()
    DURATION = enum.auto()
    STRING = enum.auto()
    LEFT_PAREN = enum.auto()
    RIGHT_PAREN = enum.auto()
    LEFT_BRACE = enum.auto()
    RIGHT_BRACE = enum.auto()
    LEFT_BRACKET = enum.auto()
    RIGHT_BRACKET = enum.auto()
    COMMA = enum.auto()
    EQL = enum.auto()
    COLON = enum.auto()
    # Operators.
    ADD = enum.auto()
    SUB = enum.auto()
    MUL = enum.auto()
    DIV = enum.auto()
    MOD = enum.auto()
    POW = enum.auto()
    EQLC = enum.auto()
    NEQ = enum.auto()
    LTE = enum.auto()
    LSS = enum.auto()
    GTE = enum.auto()
    GTR = enum.auto()
    EQL_REGEX = enum.auto()
    NEQ_REGEX = enum.auto()
    TRIM_UPPER = enum.auto()  # "</": drop histogram observations above the threshold
    TRIM_LOWER = enum.auto()  # ">/": drop histogram observations below the threshold
    LAND = enum.auto()
    LOR = enum.auto()
    LUNLESS = enum.auto()
    ATAN2 = enum.auto()
    AT = enum.auto()
    # Aggregators.
    SUM = enum.auto()
    AVG = enum.auto()
    COUNT = enum.auto()
    MIN = enum.auto()
    MAX = enum.auto()
    GROUP = enum.auto()
    STDDEV = enum.auto()
    STDVAR = enum.auto()
    TOPK = enum.auto()
    BOTTOMK = enum.auto()
    COUNT_VALUES = enum.auto()
    QUANTILE = enum.auto()
    LIMITK = enum.auto()
    LIMIT_RATIO = enum.auto()
    # Keywords.
    BOOL = enum.auto()
    BY = enum.auto()
    GROUP_LEFT = enum.auto()
    GROUP_RIGHT = enum.auto()
    IGNORING = enum.auto()
    OFFSET = enum.auto()
    ON = enum.auto()
    WITHOUT = enum.auto()
    SMOOTHED = enum.auto()
    ANCHORED = enum.auto()
    # Preprocessors (start()/end() in @, step()/range() in durations).
    START = enum.auto()
    END = enum.auto()
    STEP = enum.auto()
    RANGE = enum.auto()


class Token(NamedTuple):
    kind: T
    pos: int
    val: str


OPERATORS = frozenset({
    T.ADD, T.SUB, T.MUL, T.DIV, T.MOD, T.POW, T.EQLC, T.NEQ, T.LTE, T.LSS, T.GTE, T.GTR,
    T.EQL_REGEX, T.NEQ_REGEX, T.TRIM_UPPER, T.TRIM_LOWER, T.LAND, T.LOR, T.LUNLESS, T.ATAN2, T.AT,
})
AGGREGATORS = frozenset({
    T.SUM, T.AVG, T.COUNT, T.MIN, T.MAX, T.GROUP, T.STDDEV, T.STDVAR, T.TOPK, T.BOTTOMK,
    T.COUNT_VALUES, T.QUANTILE, T.LIMITK, T.LIMIT_RATIO,
})
KEYWORDS = frozenset({
    T.BOOL, T.BY, T.GROUP_LEFT, T.GROUP_RIGHT, T.IGNORING, T.OFFSET, T.ON, T.WITHOUT,
    T.SMOOTHED, T.ANCHORED,
})
PREPROCESSORS = frozenset({T.START, T.END, T.STEP, T.RANGE})

# Words the lexer turns into keyword tokens outside braces (matched case-insensitively).
WORDS: dict[str, T] = {
    "and": T.LAND, "or": T.LOR, "unless": T.LUNLESS, "atan2": T.ATAN2,
    "sum": T.SUM, "avg": T.AVG, "count": T.COUNT, "min": T.MIN, "max": T.MAX,
    "group": T.GROUP, "stddev": T.STDDEV, "stdvar": T.STDVAR, "topk": T.TOPK,
    "bottomk": T.BOTTOMK, "count_values": T.COUNT_VALUES, "quantile": T.QUANTILE,
    "limitk": T.LIMITK, "limit_ratio": T.LIMIT_RATIO,
    "offset": T.OFFSET, "smoothed": T.SMOOTHED, "anchored": T.ANCHORED, "by": T.BY,
    "without": T.WITHOUT, "on": T.ON, "ignoring": T.IGNORING, "group_left": T.GROUP_LEFT,
    "group_right": T.GROUP_RIGHT, "bool": T.BOOL,
    "start": T.START, "end": T.END, "step": T.STEP, "range": T.RANGE,
    "inf": T.NUMBER, "nan": T.NUMBER,
}

# Fixed renderings of tokens in error messages (Prometheus' ItemTypeStr).
_FIXED_TEXT: dict[T, str] = {
    T.LEFT_PAREN: "(", T.RIGHT_PAREN: ")", T.LEFT_BRACE: "{", T.RIGHT_BRACE: "}",
    T.LEFT_BRACKET: "[", T.RIGHT_BRACKET: "]", T.COMMA: ",", T.EQL: "=", T.COLON: ":",
    T.SUB: "-", T.ADD: "+", T.MUL: "*", T.MOD: "%", T.DIV: "/", T.EQLC: "==", T.NEQ: "!=",
    T.LTE: "<=", T.LSS: "<", T.GTE: ">=", T.GTR: ">", T.EQL_REGEX: "=~", T.NEQ_REGEX: "!~",
    T.POW: "^", T.AT: "@", T.TRIM_UPPER: "</", T.TRIM_LOWER: ">/",
}
_FIXED_TEXT.update({kind: word for word, kind in WORDS.items() if kind is not T.NUMBER})

_KIND_NAMES = {
    T.IDENTIFIER: "identifier", T.METRIC_IDENTIFIER: "metric identifier", T.NUMBER: "number",
    T.STRING: "string", T.DURATION: "duration", T.COMMENT: "comment",
}

_EOF = ""
_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_SPACES = " \t\n\r"


def is_alpha(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def is_digit(c: str) -> bool:
    return "0" <= c <= "9" and c != ""


def is_alnum(c: str) -> bool:
    return c != "" and (is_alpha(c) or "0" <= c <= "9")


def go_unicode(ch: str) -> str:
    """Go ``%#U``: ``U+0063 'c'`` (the character only when printable)."""
    if ch == _EOF:
        return "U+FFFFFFFFFFFFFFFF"
    o = ord(ch)
    text = f"U+{o:04X}"
    if ch == " " or ch.isprintable():
        text += f" '{ch}'"
    return text


def describe(tok: Token) -> str:
    """How a token is named in 'unexpected ...' messages (Prometheus' ``Item.desc``)."""
    kind = tok.kind
    if kind is T.EOF:
        return "end of input"
    if kind is T.ERROR:
        return tok.val
    if kind in _FIXED_TEXT:
        return _item_string(tok)
    return f"{_KIND_NAMES.get(kind, kind.name.lower())} {_item_string(tok)}"


def _item_string(tok: Token) -> str:
    kind = tok.kind
    if kind in (T.IDENTIFIER, T.METRIC_IDENTIFIER):
        return go_quote(tok.val)
    if kind in KEYWORDS:
        return f"<{tok.val}>"
    if kind in OPERATORS:
        return f"<op:{tok.val}>"
    if kind in AGGREGATORS:
        return f"<aggr:{tok.val}>"
    if len(tok.val) > 10:
        return go_quote(tok.val[:10]) + "..."
    return go_quote(tok.val)


# ---------------------------------------------------------------------------------------------


class Lexer:
    """Turns a query into tokens, one :meth:`next_token` call at a time."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.n = len(src)
        self.pos = 0
        self.start = 0
        self._width = 0
        self.paren_depth = 0
        self.brace_open = False
        self.bracket_open = False
        self.got_colon = False
        self.got_duration = False
        self._quote = ""
        self._state: Callable[[], Token | None] = self._statements

    def __iter__(self) -> Iterator[Token]:
        while True:
            tok = self.next_token()
            yield tok
            if tok.kind in (T.EOF, T.ERROR):
                return

    def next_token(self) -> Token:
        while True:
            tok = self._state()
            if tok is not None:
                return tok

    # --- primitives ------------------------------------------------------------------------

    def _next(self) -> str:
        if self.pos >= self.n:
            self._width = 0
            return _EOF
        c = self.src[self.pos]
        self.pos += 1
        self._width = 1
        return c

    def _backup(self) -> None:
        self.pos -= self._width

    def _peek(self) -> str:
        return self.src[self.pos] if self.pos < self.n else _EOF

    def _is(self, valid: str) -> bool:
        c = self._peek()
        return c != _EOF and c in valid

    def _accept(self, valid: str) -> bool:
        if self._is(valid):
            self.pos += 1
            self._width = 1
            return True
        return False

    def _accept_run(self, valid: str) -> None:
        while self._accept(valid):
            pass

    def _emit(self, kind: T) -> Token:
        tok = Token(kind, self.start, self.src[self.start:self.pos])
        self.start = self.pos
        return tok

    def _ignore(self) -> None:
        self.start = self.pos

    def _error(self, message: str) -> Token:
        self._state = self._done
        return Token(T.ERROR, self.start, message)

    def _done(self) -> Token:
        self.start = self.pos = self.n
        return Token(T.EOF, self.n, "")

    def _skip_spaces(self) -> None:
        while self._is(_SPACES):
            self.pos += 1
        self._ignore()

    # --- states ----------------------------------------------------------------------------

    def _statements(self) -> Token | None:
        if self.brace_open:
            return self._inside_braces()
        if self.src.startswith("#", self.pos):
            return self._line_comment()
        c = self._next()
        if c == _EOF:
            if self.paren_depth != 0:
                return self._error("unclosed left parenthesis")
            if self.bracket_open:
                return self._error("unclosed left bracket")
            self._state = self._done
            return self._emit(T.EOF)
        if c in _SPACES:
            self._skip_spaces()
            return None
        simple = _SIMPLE.get(c)
        if simple is not None:
            return self._emit(simple)
        if is_digit(c) or (c == "." and is_digit(self._peek())):
            self._backup()
            return self._number_or_duration()
        if c in "\"'":
            self._quote = c
            return self._string()
        if c == "`":
            return self._raw_string()
        if is_alpha(c) or c == ":":
            return self._word_in_statements(c)
        return self._punctuation(c)

    def _punctuation(self, c: str) -> Token:
        if c == "=":
            t = self._peek()
            if t == "=":
                self.pos += 1
                return self._emit(T.EQLC)
            if t == "~":
                return self._error(f"unexpected character after '=': {go_quote_rune(t)}")
            return self._emit(T.EQL)
        if c == "!":
            t = self._next()
            if t != "=":
                return self._error(f"unexpected character after '!': {go_quote_rune(t)}")
            return self._emit(T.NEQ)
        if c in "<>":
            if self._accept("="):
                return self._emit(T.LTE if c == "<" else T.GTE)
            if self._accept("/"):
                return self._emit(T.TRIM_UPPER if c == "<" else T.TRIM_LOWER)
            return self._emit(T.LSS if c == "<" else T.GTR)
        if c in ("(", ")"):
            return self._paren(c)
        if c == "{":
            self.brace_open = True
            return self._emit(T.LEFT_BRACE)
        if c == "[":
            return self._left_bracket()
        if c == "]":
            if not self.bracket_open:
                return self._error("unexpected right bracket ']'")
            self.bracket_open = False
            return self._emit(T.RIGHT_BRACKET)
        return self._error(f"unexpected character: {go_quote_rune(c)}")

    def _paren(self, c: str) -> Token:
        if c == "(":
            self.paren_depth += 1
            return self._emit(T.LEFT_PAREN)
        tok = self._emit(T.RIGHT_PAREN)
        self.paren_depth -= 1
        if self.paren_depth < 0:
            return self._error("unexpected right parenthesis ')'")
        return tok

    def _left_bracket(self) -> Token:
        if self.bracket_open:
            return self._error("unexpected left bracket '['")
        self.got_colon = False
        tok = self._emit(T.LEFT_BRACKET)
        self._skip_spaces()
        self.bracket_open = True
        self._state = self._duration_expr
        return tok

    def _word_in_statements(self, c: str) -> Token:
        if not self.bracket_open:
            self._backup()
            return self._keyword_or_identifier()
        if c == ":":
            if self.got_colon:
                return self._error("unexpected colon ':'")
            self.got_colon = True
            return self._emit(T.COLON)
        if c in "sSmMrR":
            tok = self._duration_keyword()
            if tok is not None:
                return tok
        return self._error(f"unexpected character: {go_quote_rune(c)}, expected ':'")

    def _inside_braces(self) -> Token | None:
        if self.src.startswith("#", self.pos):
            return self._line_comment()
        c = self._next()
        if c == _EOF:
            return self._error("unexpected end of input inside braces")
        if c in _SPACES:
            self._skip_spaces()
            return None
        if is_alpha(c):
            while is_alnum(self._peek()):
                self.pos += 1
            return self._emit(T.IDENTIFIER)
        if c == ",":
            return self._emit(T.COMMA)
        if c in "\"'":
            self._quote = c
            return self._string()
        if c == "`":
            return self._raw_string()
        if c == "=":
            return self._emit(T.EQL_REGEX if self._accept("~") else T.EQL)
        if c == "!":
            nr = self._next()
            if nr == "~":
                return self._emit(T.NEQ_REGEX)
            if nr == "=":
                return self._emit(T.NEQ)
            return self._error(f"unexpected character after '!' inside braces: {go_quote_rune(nr)}")
        if c == "{":
            return self._error("unexpected left brace '{'")
        if c == "}":
            self.brace_open = False
            return self._emit(T.RIGHT_BRACE)
        return self._error(f"unexpected character inside braces: {go_quote_rune(c)}")

    def _duration_expr(self) -> Token | None:
        """The first token(s) after ``[``: numbers, durations and duration-expression syntax."""
        c = self._next()
        if c == _EOF:
            return self._error("unexpected end of input in duration expression")
        if c == "]":
            self.bracket_open = False
            self.got_colon = False
            self._state = self._statements
            return self._emit(T.RIGHT_BRACKET)
        if c == ":":
            self._ignore()
            if not self.got_duration:
                return self._error("unexpected colon before duration in duration expression")
            if self.got_colon:
                return self._error("unexpected repeated colon in duration expression")
            self.got_colon = True
            return Token(T.COLON, self.pos - 1, ":")
        if c in _SPACES:
            self._skip_spaces()
            return None
        if c in ("(", ")"):
            return self._paren(c)
        if c in "+-*/%^,":
            return self._emit(_SIMPLE[c])
        if c in "sSmMrR":
            keyword = self._duration_keyword()
            if keyword is not None:
                return keyword
        elif is_digit(c) or (c == "." and is_digit(self._peek())):
            self._backup()
            self.got_duration = True
            self._state = self._statements
            return self._number_or_duration()
        return self._error(f"unexpected character in duration expression: {go_quote_rune(c)}")

    def _duration_keyword(self) -> Token | None:
        while is_alpha(self._peek()):
            self.pos += 1
        kind = _DURATION_WORDS.get(self.src[self.start:self.pos].lower())
        return self._emit(kind) if kind is not None else None

    def _line_comment(self) -> Token:
        self.pos += 1
        while self.pos < self.n and self.src[self.pos] not in "\r\n":
            self.pos += 1
        return self._emit(T.COMMENT)

    def _keyword_or_identifier(self) -> Token:
        while True:
            c = self._peek()
            if not (is_alnum(c) or c == ":"):
                break
            self.pos += 1
        word = self.src[self.start:self.pos]
        kind = WORDS.get(word.lower())
        if kind is None:
            kind = T.METRIC_IDENTIFIER if ":" in word else T.IDENTIFIER
        return self._emit(kind)

    # --- numbers ---------------------------------------------------------------------------

    def _number_or_duration(self) -> Token:
        if self.scan_number():
            return self._emit(T.NUMBER)
        if self._accept_remaining_duration():
            self._backup()
            return self._emit(T.DURATION)
        return self._error(f"bad number or duration syntax: {go_quote(self.src[self.start:self.pos])}")

    def _accept_remaining_duration(self) -> bool:
        if not self._accept("smhdwy"):
            return False
        self._accept("s")  # "ms"; bad units like "hs" are caught when the duration is parsed
        while self._accept(_DIGITS):
            self._accept_run(_DIGITS)
            if not self._accept("smhdw"):
                return False
            self._accept("s")
        return not is_alnum(self._next())

    def scan_number(self, series: bool = False) -> bool:
        """Consume a number in any accepted syntax (the value is checked later)."""
        initial = self.pos
        digits = _DIGITS
        if not series and self._accept("0") and self._accept("xX"):
            self._accept("_")
            digits = _HEX_DIGITS
        self._accept(".")
        self._accept(digits)
        if not self._scan_number_tail(digits):
            return False
        if self.pos == initial:
            return False
        c = self._peek()
        return (series and c == "x") or not is_alnum(c)

    def _scan_number_tail(self, digits: str) -> bool:
        dot = exp = False
        allowed = digits + "._eE"
        while self._is(allowed):
            if (self._is(".") and dot) or (self._is("eE") and exp):
                self.pos += 1
                return False
            if self._accept("."):
                dot = True
                if self._accept("_.") or len(digits) > 10:
                    return False
                continue
            if self._accept("eE"):
                exp = True
                self._accept("+-")
                if self._accept("._eE") or self._peek() == _EOF:
                    return False
                continue
            if self._accept("_"):
                if self._accept("._eE") or self._peek() == _EOF:
                    return False
                continue
            self._accept_run(digits)
        return True

    # --- strings ---------------------------------------------------------------------------

    def _string(self) -> Token:
        while True:
            c = self._next()
            if c == "\\":
                err = self._escape()
                if err is not None:
                    return self._error(err)
            elif c in (_EOF, "\n"):
                return self._error("unterminated quoted string")
            elif c == self._quote:
                return self._emit(T.STRING)

    def _escape(self) -> str | None:
        """Check one escape sequence (the backslash is consumed); returns an error message."""
        ch = self._next()
        if ch == _EOF:
            return "escape sequence not terminated"
        if ch in "abfnrtv\\" or ch == self._quote:
            return None
        if ch in "01234567":
            n, base, max_val = 3, 8, 255
        elif ch in "xuU":
            n, base, max_val = {"x": (2, 16, 255), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}[ch]
            ch = self._next()
        else:
            return f"unknown escape sequence {go_unicode(ch)}"
        value = 0
        while n > 0:
            d = int(ch, 16) if ch != _EOF and ch in _HEX_DIGITS else 16
            if d >= base:
                if ch == _EOF:
                    return "escape sequence not terminated"
                return f"illegal character {go_unicode(ch)} in escape sequence"
            value = value * base + d
            n -= 1
            if n > 0:
                ch = self._next()
        if value > max_val or 0xD800 <= value < 0xE000:
            return "escape sequence is an invalid Unicode code point"
        return None

    def _raw_string(self) -> Token:
        end = self.src.find("`", self.pos)
        if end < 0:
            self.pos = self.n
            return self._error("unterminated raw string")
        self.pos = end + 1
        return self._emit(T.STRING)


_SIMPLE: dict[str, T] = {
    ",": T.COMMA, "*": T.MUL, "/": T.DIV, "%": T.MOD, "+": T.ADD, "-": T.SUB, "^": T.POW,
    "@": T.AT,
}
_DURATION_WORDS = {"step": T.STEP, "range": T.RANGE, "min": T.MIN, "max": T.MAX, "min_of": T.MIN, "max_of": T.MAX}


def tokenize(src: str) -> list[Token]:
    """All tokens of ``src`` (comments included), ending with ``EOF`` or ``ERROR``."""
    return list(Lexer(src))


# ---------------------------------------------------------------------------------------------
# String literal decoding (Go ``strconv.Unquote`` rules; single quotes may hold many runes).


def unquote(text: str) -> str:
    """Decode a lexed string token, quotes included.

    ``\\xHH`` and octal escapes produce raw bytes as in Go; runs of them are decoded as UTF-8,
    and bytes that are not valid UTF-8 survive as ``surrogateescape`` characters.
    """
    quote, body = text[0], text[1:-1]
    if quote == "`":
        return body.replace("\r", "")
    if "\\" not in body:
        return body
    out: list[str] = []
    raw = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            _flush(raw, out)
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in "01234567":
            raw.append(int(body[i + 1:i + 4], 8))
            i += 4
        elif e == "x":
            raw.append(int(body[i + 2:i + 4], 16))
            i += 4
        elif e in "uU":
            width = 4 if e == "u" else 8
            _flush(raw, out)
            out.append(chr(int(body[i + 2:i + 2 + width], 16)))
            i += 2 + width
        else:
            _flush(raw, out)
            out.append(_SIMPLE_UNESCAPES.get(e, e))
            i += 2
    _flush(raw, out)
    return "".join(out)


_SIMPLE_UNESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _flush(raw: bytearray, out: list[str]) -> None:
    if raw:
        out.append(raw.decode("utf-8", "surrogateescape"))
        raw.clear()
