from __future__ import annotations

import pytest

from thanostools.core.goformat import go_quote, go_quote_rune
from thanostools.core.promql.parser.lexer import (
    Lexer,
    T,
    Token,
    describe,
    tokenize,
    unquote,
)


def kinds(src: str) -> list[T]:
    return [t.kind for t in tokenize(src)]


def values(src: str) -> list[str]:
    return [t.val for t in tokenize(src) if t.kind is not T.EOF]


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("1", [T.NUMBER]),
        ("0x1f", [T.NUMBER]),
        ("0X_1F", [T.NUMBER]),
        ("1e10", [T.NUMBER]),
        ("1.5E-3", [T.NUMBER]),
        (".5", [T.NUMBER]),
        ("5.", [T.NUMBER]),
        ("1_000_000", [T.NUMBER]),
        (".123_456", [T.NUMBER]),
        ("Inf", [T.NUMBER]),
        ("iNf", [T.NUMBER]),
        ("NaN", [T.NUMBER]),
        ("nan", [T.NUMBER]),
        ("5m", [T.DURATION]),
        ("1h30m", [T.DURATION]),
        ("500ms", [T.DURATION]),
        ("1y2w3d4h5m6s7ms", [T.DURATION]),
        ("Infinity", [T.IDENTIFIER]),
        ("foo", [T.IDENTIFIER]),
        ("foo:bar", [T.METRIC_IDENTIFIER]),
        (":foo", [T.METRIC_IDENTIFIER]),
        ("sum", [T.SUM]),
        ("SUM", [T.SUM]),
        ("count_values", [T.COUNT_VALUES]),
        ("limit_ratio", [T.LIMIT_RATIO]),
        ("and or unless atan2", [T.LAND, T.LOR, T.LUNLESS, T.ATAN2]),
        ("by without on ignoring", [T.BY, T.WITHOUT, T.ON, T.IGNORING]),
        ("group_left group_right bool offset", [T.GROUP_LEFT, T.GROUP_RIGHT, T.BOOL, T.OFFSET]),
        ("start end step range", [T.START, T.END, T.STEP, T.RANGE]),
        ("smoothed anchored", [T.SMOOTHED, T.ANCHORED]),
        ("+ - * / % ^", [T.ADD, T.SUB, T.MUL, T.DIV, T.MOD, T.POW]),
        ("== != <= < >= >", [T.EQLC, T.NEQ, T.LTE, T.LSS, T.GTE, T.GTR]),
        ("</ >/", [T.TRIM_UPPER, T.TRIM_LOWER]),
        ("( ) , @", [T.LEFT_PAREN, T.RIGHT_PAREN, T.COMMA, T.AT]),
        ('"a"', [T.STRING]),
        ("'a'", [T.STRING]),
        ("`a\\`", [T.STRING]),
        ("# only a comment", [T.COMMENT]),
    ],
)
def test_token_kinds(src: str, expected: list[T]) -> None:
    assert kinds(src) == [*expected, T.EOF]


def test_positions_are_character_offsets() -> None:
    toks = tokenize('sum(rate(x{a="é"}[5m]))')
    assert [(t.kind, t.pos) for t in toks[:8]] == [
        (T.SUM, 0), (T.LEFT_PAREN, 3), (T.IDENTIFIER, 4), (T.LEFT_PAREN, 8),
        (T.IDENTIFIER, 9), (T.LEFT_BRACE, 10), (T.IDENTIFIER, 11), (T.EQL, 12),
    ]
    assert toks[8] == Token(T.STRING, 13, '"é"')
    assert toks[9].pos == 16 and toks[10] == Token(T.LEFT_BRACKET, 17, "[")


def test_keywords_inside_braces_are_identifiers() -> None:
    assert kinds('x{sum="1", by!="2", offset=~"3", nan!~"4"}') == [
        T.IDENTIFIER, T.LEFT_BRACE,
        T.IDENTIFIER, T.EQL, T.STRING, T.COMMA,
        T.IDENTIFIER, T.NEQ, T.STRING, T.COMMA,
        T.IDENTIFIER, T.EQL_REGEX, T.STRING, T.COMMA,
        T.IDENTIFIER, T.NEQ_REGEX, T.STRING,
        T.RIGHT_BRACE, T.EOF,
    ]


def test_brackets_hold_durations_numbers_and_colon() -> None:
    assert kinds("x[5m:1m]") == [
        T.IDENTIFIER, T.LEFT_BRACKET, T.DURATION, T.COLON, T.DURATION, T.RIGHT_BRACKET, T.EOF,
    ]
    assert kinds("x[ 1.5 : ]") == [T.IDENTIFIER, T.LEFT_BRACKET, T.NUMBER, T.COLON, T.RIGHT_BRACKET, T.EOF]
    assert kinds("x[step()]") == [
        T.IDENTIFIER, T.LEFT_BRACKET, T.STEP, T.LEFT_PAREN, T.RIGHT_PAREN, T.RIGHT_BRACKET, T.EOF,
    ]


def test_comments_run_to_end_of_line() -> None:
    toks = tokenize("a # note\n+ b")
    assert [t.kind for t in toks] == [T.IDENTIFIER, T.COMMENT, T.ADD, T.IDENTIFIER, T.EOF]
    assert toks[1].val == "# note"


def test_eof_position_is_end_of_input() -> None:
    assert tokenize("foo   ")[-1] == Token(T.EOF, 6, "")


@pytest.mark.parametrize(
    ("src", "message", "pos"),
    [
        (".", "unexpected character: '.'", 0),
        ("2.5.", 'bad number or duration syntax: "2.5."', 0),
        ("0deadbeef", 'bad number or duration syntax: "0de"', 0),
        ("1e", 'bad number or duration syntax: "1e"', 0),
        ("1__0", 'bad number or duration syntax: "1__"', 0),
        ("5mm", 'bad number or duration syntax: "5mm"', 0),
        ("(", "unclosed left parenthesis", 1),
        ("(1))", "unexpected right parenthesis ')'", 4),
        ("x[5m", "unclosed left bracket", 4),
        ("]", "unexpected right bracket ']'", 0),
        ("x[[", "unexpected character in duration expression: '['", 2),
        ("x[5m][", "unexpected end of input in duration expression", 6),
        ("x[5m:1m:]", "unexpected colon ':'", 7),
        ("x[:5m]", "unexpected colon before duration in duration expression", 3),
        ("x[5m x]", "unexpected character: 'x', expected ':'", 5),
        ("=~", "unexpected character after '=': '~'", 0),
        ("!x", "unexpected character after '!': 'x'", 0),
        ("{a!x}", "unexpected character after '!' inside braces: 'x'", 2),
        ("{", "unexpected end of input inside braces", 1),
        ("{{", "unexpected left brace '{'", 1),
        ("{a:b}", "unexpected character inside braces: ':'", 2),
        ("}", "unexpected character: '}'", 0),
        ("é", "unexpected character: 'é'", 0),
        ('"abc', "unterminated quoted string", 0),
        ('"a\nb"', "unterminated quoted string", 0),
        ("`abc", "unterminated raw string", 0),
        ('"\\', "escape sequence not terminated", 0),
        ('"\\q"', "unknown escape sequence U+0071 'q'", 0),
        ('"\\x4g"', "illegal character U+0067 'g' in escape sequence", 0),
        ('"\\400"', "escape sequence is an invalid Unicode code point", 0),
        ('"\\ud800"', "escape sequence is an invalid Unicode code point", 0),
        ("'\\\"'", "unknown escape sequence U+0022 '\"'", 0),
    ],
)
def test_lexing_errors(src: str, message: str, pos: int) -> None:
    last = tokenize(src)[-1]
    assert last.kind is T.ERROR
    assert (last.val, last.pos) == (message, pos)


def test_error_token_ends_the_stream() -> None:
    lexer = Lexer("a ! b")
    assert lexer.next_token().kind is T.IDENTIFIER
    assert lexer.next_token().kind is T.ERROR
    assert lexer.next_token().kind is T.EOF
    assert lexer.next_token().kind is T.EOF


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"plain"', "plain"),
        ("'single \\' quote'", "single ' quote"),
        ('"double \\" quote"', 'double " quote'),
        ('"\\a\\b\\f\\n\\r\\t\\v\\\\"', "\a\b\f\n\r\t\v\\"),
        ('"\\x41\\101\\u00e9\\U0001F600"', "AAé\U0001f600"),
        ('"\\xc3\\xa9"', "é"),  # \x escapes are bytes; together they spell UTF-8
        ("`raw \\n \"q\" 'q'`", "raw \\n \"q\" 'q'"),
        ("`with\r\ncarriage`", "with\ncarriage"),
        ('"☺"', "☺"),
    ],
)
def test_unquote(literal: str, value: str) -> None:
    assert kinds(literal) == [T.STRING, T.EOF]
    assert unquote(literal) == value


def test_unquote_keeps_invalid_utf8_bytes() -> None:
    value = unquote('"\\xff"')
    assert value.encode("utf-8", "surrogateescape") == b"\xff"
    assert go_quote(value) == '"\\xff"'


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("abc", '"abc"'),
        ('a"b', '"a\\"b"'),
        ("a'b", '"a\'b"'),
        ("tab\there", '"tab\\there"'),
        ("\x00\x7f", '"\\x00\\x7f"'),
        ("é☺", '"é☺"'),
        ("\u00a0", '"\\u00a0"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_go_quote_rune() -> None:
    assert go_quote_rune("'") == "'\\''"
    assert go_quote_rune('"') == "'\"'"
    assert go_quote_rune("\n") == "'\\n'"
    assert go_quote_rune("") == "'\ufffd'"


@pytest.mark.parametrize(
    ("tok", "text"),
    [
        (Token(T.EOF, 0, ""), "end of input"),
        (Token(T.IDENTIFIER, 0, "foo"), 'identifier "foo"'),
        (Token(T.METRIC_IDENTIFIER, 0, "a:b"), 'metric identifier "a:b"'),
        (Token(T.NUMBER, 0, "Inf"), 'number "Inf"'),
        (Token(T.DURATION, 0, "5m"), 'duration "5m"'),
        (Token(T.STRING, 0, '"x"'), 'string "\\"x\\""'),
        (Token(T.STRING, 0, '"a long string"'), 'string "\\"a long st"...'),
        (Token(T.BY, 0, "BY"), "<BY>"),
        (Token(T.MUL, 0, "*"), "<op:*>"),
        (Token(T.LAND, 0, "and"), "<op:and>"),
        (Token(T.AT, 0, "@"), "<op:@>"),
        (Token(T.SUM, 0, "sum"), "<aggr:sum>"),
        (Token(T.COMMA, 0, ","), '","'),
        (Token(T.START, 0, "start"), '"start"'),
    ],
)
def test_describe(tok: Token, text: str) -> None:
    assert describe(tok) == text
