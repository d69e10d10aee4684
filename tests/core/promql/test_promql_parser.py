from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.errors import ParseError
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.promql.features import NO_PROMQL_FEATURES, PROMQL_FEATURES
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Cardinality,
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
    float_bits,
    type_of,
    walk,
)
from thanostools.core.promql.parser.parse import (
    parse_duration,
    parse_expr,
    parse_number,
    parse_selector,
)
from thanostools.core.promql.parser.printer import format_expr
from thanostools.core.timeutil import format_duration

SAME = None  # the canonical form equals the input

# (input, canonical one-line form)
VALID: list[tuple[str, str | None]] = [
    ('1', SAME),
    ('+1', '1'),
    ('-1', SAME),
    ('.5', '0.5'),
    ('5.', '5'),
    ('123.4567', SAME),
    ('5e-3', '0.005'),
    ('5E3', '5000'),
    ('0xc', '12'),
    ('0x_1F', '31'),
    ('0755', '493'),
    ('08', '8'),
    ('1_000_000', '1000000'),
    ('.123_456', '0.123456'),
    ('+Inf', SAME),
    ('-Inf', SAME),
    ('inf', '+Inf'),
    ('NaN', SAME),
    ('-nan', 'NaN'),
    ("1e100", "1" + "0" * 100),
    ('1e-7', '0.0000001'),
    ('-0', SAME),
    ('0.1', SAME),
    ('+5.5e-3', '0.0055'),
    ('-0755', '-493'),
    ('5m', SAME),
    ('-5m', SAME),
    ('1h30m', SAME),
    ('1y', SAME),
    ('7d', '1w'),
    ('14d', '2w'),
    ('500ms', SAME),
    ('1 + 1', SAME),
    ('1 - 1', SAME),
    ('1 * 1', SAME),
    ('1 % 1', SAME),
    ('1 / 1', SAME),
    ('2 ^ 3', SAME),
    ('1 atan2 2', SAME),
    ('1 == bool 1', SAME),
    ('1 != bool 1', SAME),
    ('1 > bool 1', SAME),
    ('1 >= bool 1', SAME),
    ('1 < bool 1', SAME),
    ('1 <= bool 1', SAME),
    ('-1^2', '-1 ^ 2'),
    ('-1*2', '-1 * 2'),
    ('-1+2', '-1 + 2'),
    ('-1^-2', '-1 ^ -2'),
    ('+1 + -2 * 1', '1 + -2 * 1'),
    ('1 + 2/(3*1)', '1 + 2 / (3 * 1)'),
    ('1 < bool 2 - 1 * 2', SAME),
    ('2 ^ 3 ^ 2', SAME),
    ('(2 ^ 3) ^ 2', SAME),
    ('2 * 3 + 4', SAME),
    ('2 + 3 * 4', SAME),
    ('2 - 3 - 4', SAME),
    ('2 - (3 - 4)', SAME),
    ('- -1', '1'),
    ('-(1)', SAME),
    ('-(-1)', SAME),
    ('--1', '1'),
    ('-some_metric', SAME),
    ('+some_metric', SAME),
    ('-some_metric ^ 2', SAME),
    ('-some_metric * 2', SAME),
    ('---metric @ 100', '---metric @ 100.000'),
    ('foo * bar', SAME),
    ('foo * sum', SAME),
    ('foo == 1', SAME),
    ('foo == bool 1', SAME),
    ('2.5 / bar', SAME),
    ('foo and bar', SAME),
    ('foo or bar', SAME),
    ('foo unless bar', SAME),
    ('foo + bar or bla and blub', SAME),
    ('foo and bar unless baz or qux', SAME),
    (
        'bar + on(foo) bla / on(baz, buz) group_right(test) blub',
        'bar + on (foo) bla / on (baz, buz) group_right (test) blub',
    ),
    ('foo * on(test,blub) bar', 'foo * on (test, blub) bar'),
    ('foo * on(test,blub) group_left bar', 'foo * on (test, blub) group_left () bar'),
    ('foo and on(test,blub) bar', 'foo and on (test, blub) bar'),
    ('foo and on() bar', 'foo and on () bar'),
    ('foo and ignoring(test,blub) bar', 'foo and ignoring (test, blub) bar'),
    ('foo and ignoring() bar', 'foo and bar'),
    ('foo unless on(bar) baz', 'foo unless on (bar) baz'),
    ('foo / on(test,blub) group_left(bar) bar', 'foo / on (test, blub) group_left (bar) bar'),
    ('foo / ignoring(test,blub) group_left(blub) bar', 'foo / ignoring (test, blub) group_left (blub) bar'),
    ('foo - on(test,blub) group_right(bar,foo) bar', 'foo - on (test, blub) group_right (bar, foo) bar'),
    (
        'foo - ignoring(test,blub) group_right(bar,foo) bar',
        'foo - ignoring (test, blub) group_right (bar, foo) bar',
    ),
    ('a - on(b) group_left() (c)', 'a - on (b) group_left () (c)'),
    ('a - ignoring() c', 'a - c'),
    ('a > bool on(x) b', 'a > bool on (x) b'),
    ('a </ 2', SAME),
    ('a >/ on(x) b', 'a >/ on (x) b'),
    ('1 + on() foo', '1 + foo'),
    ('foo + ignoring() group_left 1', 'foo + 1'),
    ('foo', SAME),
    ('min', SAME),
    ('by', SAME),
    ('offset', SAME),
    ('start', SAME),
    ('end', SAME),
    ('step', SAME),
    ('range', SAME),
    ('anchored', SAME),
    ('smoothed', SAME),
    ('and', SAME),
    ('sum', SAME),
    ('foo offset 5m', SAME),
    ('foo offset -7m', SAME),
    ('foo OFFSET 1h30m', 'foo offset 1h30m'),
    ('foo OFFSET 1m30ms', 'foo offset 1m30ms'),
    ('foo offset 50', 'foo offset 50s'),
    ('foo offset -50', 'foo offset -50s'),
    ('foo offset 1.2345', 'foo offset 1s234ms'),
    ('foo offset 0', 'foo'),
    ('foo @ 1603774568', 'foo @ 1603774568.000'),
    ('foo @ -100', 'foo @ -100.000'),
    ('foo @ .3', 'foo @ 0.300'),
    ('foo @ 3.', 'foo @ 3.000'),
    ('foo @ 3.33', 'foo @ 3.330'),
    ('foo @ 3.3333', 'foo @ 3.333'),
    ('foo @ 3.3335', 'foo @ 3.334'),
    ('foo @ 3e2', 'foo @ 300.000'),
    ('foo @ 3e-1', 'foo @ 0.300'),
    ('foo @ 0xA', 'foo @ 10.000'),
    ('foo @ -3.3e1', 'foo @ -33.000'),
    ('foo @ 2m', 'foo @ 120.000'),
    ('foo @ 1m40s', 'foo @ 100.000'),
    ('foo @ start()', SAME),
    ('foo @ end()', SAME),
    ('foo @ 100 offset 50s', 'foo @ 100.000 offset 50s'),
    ('foo offset 50s @ 100', 'foo @ 100.000 offset 50s'),
    ('foo @ 0 offset -50', 'foo @ 0.000 offset -50s'),
    ('foo:bar{a="bc"}', SAME),
    ('{"foo"}', '{__name__="foo"}'),
    (
        "{'foo\\'bar', 'a\\\\dos\\\\path'='boo\\\\urns'}",
        '{"a\\\\dos\\\\path"="boo\\\\urns",__name__="foo\'bar"}',
    ),
    ('{"foo", a="bc"}', '{__name__="foo",a="bc"}'),
    ("foo{NaN='bc'}", 'foo{NaN="bc"}'),
    ("foo{bar='}'}", 'foo{bar="}"}'),
    ('foo{a="b", foo!="bar", test=~"test", bar!~"baz"}', 'foo{a="b",bar!~"baz",foo!="bar",test=~"test"}'),
    (
        '{a="b", foo!="bar", "foo", test=~"test", bar!~"baz"}',
        '{__name__="foo",a="b",bar!~"baz",foo!="bar",test=~"test"}',
    ),
    ('foo{a="b", foo!="bar", test=~"test", bar!~"baz",}', 'foo{a="b",bar!~"baz",foo!="bar",test=~"test"}'),
    ('{__name__=~"bar", __name__!~"baz"}', '{__name__!~"baz",__name__=~"bar"}'),
    ('{__name__="bar", __name__="baz"}', '{__name__="bar",__name__="baz"}'),
    ('{"bar", __name__="baz"}', '{__name__="bar",__name__="baz"}'),
    ('{"foo.bar"="x", job="y"}', '{"foo.bar"="x",job="y"}'),
    ('{"some.metric"}', '{__name__="some.metric"}'),
    ('x{a="\\n\\t\\\\\\""}', SAME),
    ('x{a=`raw\\d`}', 'x{a="raw\\\\d"}'),
    ('x{a="é"}', SAME),
    ('x{a="\\xff"}', SAME),
    ('test[1000ms]', 'test[1s]'),
    ('test[1001ms]', 'test[1s1ms]'),
    ('test[5s]', SAME),
    ('test[5m]', SAME),
    ('foo[5m30s]', SAME),
    ('test[5h] OFFSET 5m', 'test[5h] offset 5m'),
    ('test[5d] OFFSET 10s', 'test[5d] offset 10s'),
    ('test[5w] offset 2w', SAME),
    ('test{a="b"}[5y] OFFSET 3d', 'test{a="b"}[5y] offset 3d'),
    ('test{a="b"}[5m] OFFSET 3600', 'test{a="b"}[5m] offset 1h'),
    ('foo[3ms] @ 2.345', SAME),
    ('foo[4s180ms] @ 2.345', SAME),
    ('foo[4.18] @ 2.345', 'foo[4s180ms] @ 2.345'),
    ('foo[4.018] @ 2.345', 'foo[4s18ms] @ 2.345'),
    ('test[5]', 'test[5s]'),
    ('some_metric[5m] @ 1m', 'some_metric[5m] @ 60.000'),
    ('test[5y] @ start()', SAME),
    ('test[5y] @ end()', SAME),
    ('foo[90s]', 'foo[1m30s]'),
    ('foo[3600s]', 'foo[1h]'),
    ('foo[86400000ms]', 'foo[1d]'),
    ('foo[52w]', SAME),
    ('foo[365d]', 'foo[1y]'),
    ('foo[2y]', SAME),
    ('foo{bar="baz"}[10m:6s]', SAME),
    ('foo{bar="baz"}[10m5s:1h6ms]', SAME),
    ('foo[10m:]', SAME),
    ('min_over_time(rate(foo{bar="baz"}[2s])[5m:5s])', SAME),
    ('min_over_time(rate(foo{bar="baz"}[2s])[5m:])[4m:3s]', SAME),
    ('min_over_time(rate(foo{bar="baz"}[2s])[5m:] offset 4m)[4m:3s]', SAME),
    (
        'min_over_time(rate(foo{bar="baz"}[2s])[5m:] @ 1603775091)[4m:3s]',
        'min_over_time(rate(foo{bar="baz"}[2s])[5m:] @ 1603775091.000)[4m:3s]',
    ),
    (
        'min_over_time(rate(foo{bar="baz"}[2s])[5m:] @ -160377509)[4m:3s]',
        'min_over_time(rate(foo{bar="baz"}[2s])[5m:] @ -160377509.000)[4m:3s]',
    ),
    (
        'sum without(and, by, avg, count, alert, annotations)(some_metric) [30m:10s]',
        'sum without (and, by, avg, count, alert, annotations) (some_metric)[30m:10s]',
    ),
    ('some_metric OFFSET 1m [10m:5s]', 'some_metric offset 1m[10m:5s]'),
    ('some_metric @ 123 [10m:5s]', 'some_metric @ 123.000[10m:5s]'),
    ('some_metric @ 123 offset 1m [10m:5s]', 'some_metric @ 123.000 offset 1m[10m:5s]'),
    ('some_metric offset 1m @ 123 [10m:5s]', 'some_metric @ 123.000 offset 1m[10m:5s]'),
    ('some_metric[10m:5s] offset 1m @ 123', 'some_metric[10m:5s] @ 123.000 offset 1m'),
    ('(foo + bar{nm="val"})[5m:]', SAME),
    ('(foo + bar{nm="val"})[5m:] offset 10m', SAME),
    (
        '(foo + bar{nm="val"} @ 1234)[5m:] @ 1603775019',
        '(foo + bar{nm="val"} @ 1234.000)[5m:] @ 1603775019.000',
    ),
    ('foo[10m:6s] @ start()', SAME),
    ('foo[10m:6s] @ end()', SAME),
    ('foo @ start() [10m:]', 'foo @ start()[10m:]'),
    ('sum by (foo)(some_metric)', 'sum by (foo) (some_metric)'),
    ('avg by (foo)(some_metric)', 'avg by (foo) (some_metric)'),
    ('max by (foo)(some_metric)', 'max by (foo) (some_metric)'),
    ('sum without (foo) (some_metric)', SAME),
    ('sum (some_metric) without (foo)', 'sum without (foo) (some_metric)'),
    ('stddev(some_metric)', SAME),
    ('stdvar by (foo)(some_metric)', 'stdvar by (foo) (some_metric)'),
    ('sum by ()(some_metric)', 'sum(some_metric)'),
    ('sum by (foo,bar,)(some_metric)', 'sum by (foo, bar) (some_metric)'),
    ('sum by (foo,)(some_metric)', 'sum by (foo) (some_metric)'),
    ('topk(5, some_metric)', SAME),
    ('count_values("value", some_metric)', SAME),
    (
        'sum without(and, by, avg, count, alert, annotations)(some_metric)',
        'sum without (and, by, avg, count, alert, annotations) (some_metric)',
    ),
    ('sum by ("foo bar")({"some.metric"})', 'sum by ("foo bar") ({__name__="some.metric"})'),
    ('sum by ("foo", bar, \'baz\')({"some.metric"})', 'sum by (foo, bar, baz) ({__name__="some.metric"})'),
    (
        'sum by (anchored, smoothed, start, end, step, range, on, bool)(x)',
        'sum by (anchored, smoothed, start, end, step, range, on, bool) (x)',
    ),
    ('sum(x) by (a:b)', 'sum by ("a:b") (x)'),
    ('group(x)', SAME),
    ('min(x)', SAME),
    ('max without (job) (x)', SAME),
    ('count by (le) (x)', SAME),
    ('bottomk(3, x) by (job)', 'bottomk by (job) (3, x)'),
    ('quantile(0.9, x)', SAME),
    ('quantile without (instance) (0.5, x)', SAME),
    ('limitk(2, x)', SAME),
    ('limit_ratio(0.5, x) by (job)', 'limit_ratio by (job) (0.5, x)'),
    ('count_values without (a) ("v", x)', SAME),
    ('topk(scalar(foo), x)', SAME),
    ('sum(sum)', SAME),
    ('a + sum', SAME),
    ('(sum(foo))', SAME),
    ('(sum(foo) )', '(sum(foo))'),
    ('(sum(foo) by (bar))', '(sum by (bar) (foo))'),
    ('(sum by (bar) (foo))', SAME),
    ('sum by (job)(rate(http_requests_total[30m]))', 'sum by (job) (rate(http_requests_total[30m]))'),
    ('time()', SAME),
    ('floor(some_metric{foo!="bar"})', SAME),
    ('rate(some_metric[5m])', SAME),
    ('round(some_metric)', SAME),
    ('round(some_metric, 5)', SAME),
    ('pi()', SAME),
    ('vector(1)', SAME),
    ('vector(5m)', SAME),
    ('scalar(foo)', SAME),
    ('hour()', SAME),
    ('hour(foo)', SAME),
    ('day_of_week(foo)', SAME),
    ('clamp(x, 0, 1)', SAME),
    ('clamp_min(x, 0)', SAME),
    ('clamp_max(x, 1)', SAME),
    ('label_replace(x, "dst", "$1", "src", "(.*)")', SAME),
    ('label_join(x, "dst", ",", "a", "b", "c")', SAME),
    ('label_join(x, "dst", ",")', SAME),
    ('histogram_quantile(0.9, rate(foo_bucket[5m]))', SAME),
    ('histogram_fraction(0, 0.2, x)', SAME),
    ('histogram_quantiles(x, "q", 0.1, 0.5, 0.9)', SAME),
    ('double_exponential_smoothing(x[5m], 0.5, 0.5)', SAME),
    ('predict_linear(x[1h], 3600)', SAME),
    ('quantile_over_time(0.5, x[5m])', SAME),
    ('absent(nonexistent{job="x"})', SAME),
    ('absent_over_time(nonexistent{job="x"}[1h])', SAME),
    ('sort_by_label(x, "a", "b")', SAME),
    ('sort_by_label_desc(x)', SAME),
    ('info(rate(http_request_counter_total{}[5m]))', 'info(rate(http_request_counter_total[5m]))'),
    (
        'info(http_request_counter_total{namespace="zzz"}, {foo="bar", bar="baz"})',
        'info(http_request_counter_total{namespace="zzz"}, {bar="baz",foo="bar"})',
    ),
    ('info(x, {a=""})', SAME),
    ('min_of(3, 5)', SAME),
    ('max_of(-2, time())', SAME),
    ('step()', SAME),
    ('range()', SAME),
    ('start()', SAME),
    ('end()', SAME),
    ('start() + range()', SAME),
    ('vector(step())', SAME),
    ('timestamp(x @ 10)', 'timestamp(x @ 10.000)'),
    ('mad_over_time(x[5m])', SAME),
    ('ts_of_max_over_time(x[5m])', SAME),
    ('first_over_time(x[5m])', SAME),
    ('"double-quoted string \\" with escaped quote"', SAME),
    ("'single-quoted string \\' with escaped quote'", '"single-quoted string \' with escaped quote"'),
    ('`backtick-quoted string`', '"backtick-quoted string"'),
    (
        '"\\a\\b\\f\\n\\r\\t\\v\\\\\\" - \\xFF\\377\\u1234\\U00010111\\U0001011111☺"',
        '"\\a\\b\\f\\n\\r\\t\\v\\\\\\" - \\xff\\xffሴ𐄑𐄑11☺"',
    ),
    ('("Foo")', SAME),
    ('""', SAME),
    ('foo # comment', 'foo'),
    ('# leading comment\n foo', 'foo'),
    ('foo  +  bar', 'foo + bar'),
    ('sum by (job) (rate(http_requests_total{job="api"}[5m]))', SAME),
]


def _canonical(src: str, canonical: str | None) -> str:
    return src if canonical is None else canonical


@pytest.mark.parametrize(("src", "canonical"), VALID)
def test_valid_expression_prints_canonically(src: str, canonical: str | None) -> None:
    assert format_expr(parse_expr(src)) == _canonical(src, canonical)


@pytest.mark.parametrize(("src", "canonical"), VALID)
def test_valid_expression_round_trips(src: str, canonical: str | None) -> None:
    expr = parse_expr(src)
    printed = format_expr(expr)
    again = parse_expr(printed)
    assert again == expr
    assert format_expr(again) == printed


# (input, 0-based error position, message) -- messages as Prometheus words them.
INVALID: list[tuple[str, int, str]] = [
    ("", 0, "no expression found in input"),
    ("# just a comment\n\n", 0, "no expression found in input"),
    ("1+", 2, "unexpected end of input"),
    ("1 /", 3, "unexpected end of input"),
    (".", 0, "unexpected character: '.'"),
    ("2.5.", 0, 'bad number or duration syntax: "2.5."'),
    ("100..4", 0, 'bad number or duration syntax: "100.."'),
    ("0deadbeef", 0, 'bad number or duration syntax: "0de"'),
    ("*1", 0, "unexpected <op:*>"),
    ("*test", 0, "unexpected <op:*>"),
    ("@@", 0, "unexpected <op:@>"),
    ("(1))", 4, "unexpected right parenthesis ')'"),
    ("((1)", 4, "unclosed left parenthesis"),
    ("(", 1, "unclosed left parenthesis"),
    ("()", 1, 'unexpected ")"'),
    ("9" * 309, 0,
     'error parsing number: strconv.ParseFloat: parsing "' + "9" * 309 + '": value out of range'),
    ("1e999", 0, 'error parsing number: strconv.ParseFloat: parsing "1e999": value out of range'),
    ("1 and 1", 0, 'set operator "and" not allowed in binary scalar expression'),
    ("1 or 1", 0, 'set operator "or" not allowed in binary scalar expression'),
    ("1 unless 1", 0, 'set operator "unless" not allowed in binary scalar expression'),
    ("foo and 1", 0, 'set operator "and" not allowed in binary scalar expression'),
    ("1 or foo", 0, 'set operator "or" not allowed in binary scalar expression'),
    ("1 == 1", 2, "comparisons between scalars must use BOOL modifier"),
    ("1 > 2", 2, "comparisons between scalars must use BOOL modifier"),
    ("1 !~ 1", 2, "unexpected character after '!': '~'"),
    ("1 =~ 1", 2, "unexpected character after '=': '~'"),
    ('-"string"', 0,
     'unary expression only allowed on expressions of type scalar or instant vector, got "string"'),
    ("-test[5m]", 0,
     'unary expression only allowed on expressions of type scalar or instant vector, got "range vector"'),
    ("-{}", 1, "vector selector must contain at least one non-empty matcher"),
    ("1 offset 1d", 0,
     "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("sum(x) offset 5m", 0,
     "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("foo offset 1s offset 2s", 0, "offset may not be set multiple times"),
    ("foo[5m] offset 1m offset 2m", 0, "offset may not be set multiple times"),
    ("foo[5m:] offset 1m offset 2m", 0, "offset may not be set multiple times"),
    ("foo @ 1 @ 2", 0, "@ <timestamp> may not be set multiple times"),
    ("foo @ start() @ end()", 0, "@ <timestamp> may not be set multiple times"),
    ("foo[1m] @ 1 @ 2", 0, "@ <timestamp> may not be set multiple times"),
    ("(foo) @ 1", 0,
     "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("rate(some_metric[5m]) @ 1234", 0,
     "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("foo @ +Inf", 0, "timestamp out of bounds for @ modifier: +Inf"),
    ("foo @ -Inf", 0, "timestamp out of bounds for @ modifier: -Inf"),
    ("foo @ NaN", 0, "timestamp out of bounds for @ modifier: NaN"),
    ("foo @ 9223372036854775808", 0, "timestamp out of bounds for @ modifier: 9223372036854775808.000000"),
    ("foo @ start", 11, "unexpected end of input in @, expected timestamp"),
    ("foo @ bar", 6, 'unexpected identifier "bar" in @, expected timestamp'),
    ("foo @ --1", 7, 'unexpected <op:-> in @, expected timestamp'),
    ("some_metric[5m] @", 17, "unexpected end of input in @, expected timestamp"),
    ("a - on(b) ignoring(c) d", 10, "unexpected <ignoring>"),
    ("foo + group_left(baz) bar", 6, "unexpected <group_left>"),
    ("foo * on(a) bool bar", 12, "unexpected <bool>"),
    ("foo * on", 8, 'unexpected end of input in grouping opts, expected "("'),
    ("foo * on(a", 10, "unclosed left parenthesis"),
    ("1 or on(bar) foo", 0, "vector matching only allowed between instant vectors"),
    ("foo == on(bar) 10", 0, "vector matching only allowed between instant vectors"),
    ("foo and on(bar) group_left(baz) bar", 0, 'no grouping allowed for "and" operation'),
    ("foo or on(bar) group_right(baz) bar", 0, 'no grouping allowed for "or" operation'),
    ("foo unless on(bar) group_left(baz) bar", 0, 'no grouping allowed for "unless" operation'),
    ('http_requests{group="production"} + on(instance) group_left(job,instance) cpu_count{type="smp"}', 34,
     'label "instance" must not occur in ON and GROUP clause at once'),
    ("foo + bool bar", 4, "bool modifier can only be used on comparison operators"),
    ("foo + bool 10", 4, "bool modifier can only be used on comparison operators"),
    ("foo and bool 10", 4, "bool modifier can only be used on comparison operators"),
    ("foo >/ bool 10", 4, "bool modifier can only be used on comparison operators"),
    ('"a" + 1', 0, "binary expression must contain only scalar and instant vector types"),
    ("1 + foo[5m]", 4, "binary expression must contain only scalar and instant vector types"),
    ("foo[5m] + 1", 0, "binary expression must contain only scalar and instant vector types"),
    ("foo bar", 4, 'unexpected identifier "bar"'),
    ('foo{a="b"}{c="d"}', 10, 'unexpected "{"'),
    ("{", 1, "unexpected end of input inside braces"),
    ("}", 0, "unexpected character: '}'"),
    ("some{", 5, "unexpected end of input inside braces"),
    ("some}", 4, "unexpected character: '}'"),
    ("some_metric{a=b}", 14, 'unexpected identifier "b" in label matching, expected string'),
    ('some_metric{a:b="b"}', 13, "unexpected character inside braces: ':'"),
    ('foo{a*"b"}', 5, "unexpected character inside braces: '*'"),
    ('foo{a>="b"}', 5, "unexpected character inside braces: '>'"),
    ("foo{gibberish}", 13, 'unexpected "}" in label matching, expected label matching operator'),
    ("foo{1}", 4, "unexpected character inside braces: '1'"),
    ("{}", 0, "vector selector must contain at least one non-empty matcher"),
    ('{x=""}', 0, "vector selector must contain at least one non-empty matcher"),
    ('{x=~".*"}', 0, "vector selector must contain at least one non-empty matcher"),
    ('{x!~".+"}', 0, "vector selector must contain at least one non-empty matcher"),
    ('{x!="a"}', 0, "vector selector must contain at least one non-empty matcher"),
    ('foo{__name__="bar"}', 0, 'metric name must not be set twice: "foo" or "bar"'),
    ('foo{"bar"}', 0, 'metric name must not be set twice: "foo" or "bar"'),
    ("foo{__name__= =}", 14, 'unexpected "=" in label matching, expected string'),
    ("foo{,}", 4, 'unexpected "," in label matching, expected identifier or "}"'),
    ('foo{a="b",,}', 10, 'unexpected "," in label matching, expected identifier or "}"'),
    ('foo{__name__ == "bar"}', 14, 'unexpected "=" in label matching, expected string'),
    ('foo{__name__="bar" lol}', 19, 'unexpected identifier "lol" in label matching, expected "," or "}"'),
    ('foo{"a"=}', 8, 'unexpected "}" in label matching, expected string'),
    ('{"a" b}', 5, 'unexpected identifier "b" in label matching, expected "," or "}"'),
    ("foo[5mm]", 4, 'bad number or duration syntax: "5mm"'),
    ("foo[5m1]", 4, 'bad number or duration syntax: "5m1"'),
    ("foo[5m:1m1]", 7, 'bad number or duration syntax: "1m1"'),
    ("foo[5y1hs]", 4, 'unknown unit "hs" in duration "5y1hs"'),
    ("foo[5m1h]", 4, 'not a valid duration string: "5m1h"'),
    ("foo[5m1m]", 4, 'not a valid duration string: "5m1m"'),
    ("foo[1.5h]", 4, 'unknown unit "." in duration "1.5h"'),
    ("foo[0m]", 4, "duration must be greater than 0"),
    ("foo[-1]", 4, "duration must be greater than 0"),
    ("foo[1m:0s]", 7, "duration must be greater than 0"),
    ('foo["5m"]', 4, "unexpected character in duration expression: '\"'"),
    ("foo[]", 4,
     'unexpected "]" in subquery or range selector, expected number, duration, step(), or range()'),
    ("foo[step]", 8,
     'unexpected "]" in subquery or range selector, expected number, duration, step(), or range()'),
    ("foo[5m 1m]", 7, 'unexpected duration "1m" in subquery or range, expected ":" or "]"'),
    ("foo[5m:1m 1m]", 10, 'unexpected duration "1m" in subquery selector, expected "]"'),
    ("x[1m:step]", 9,
     'unexpected "]" in subquery selector, expected number, duration, step(), range(), or "]"'),
    ("foo[5m", 6, "unclosed left bracket"),
    ('foo{bar="baz"}[', 15, "unexpected end of input in duration expression"),
    ("foo[5s x 5s]", 7, "unexpected character: 'x', expected ':'"),
    ("foo[5s s 5s]", 7, "unexpected character: 's', expected ':'"),
    ("foo[9.5e10]", 4, "duration out of range"),
    ("foo offset 9.5e10", 11, "duration out of range"),
    ("some_metric[5m] OFFSET 1mm", 23, 'bad number or duration syntax: "1mm"'),
    ("some_metric[5m] OFFSET", 22,
     "unexpected end of input in offset, expected number, duration, step(), or range()"),
    ("foo offset bar", 11,
     'unexpected identifier "bar" in offset, expected number, duration, step(), or range()'),
    ("some_metric OFFSET 1m[5m]", 21, "no offset modifiers allowed before range"),
    ("some_metric @ 1234 [5m]", 19, "no @ modifiers allowed before range"),
    ("(foo + bar)[5m]", 11, "ranges only allowed for vector selectors"),
    ("rate(food[1m])[1h] offset 1h", 14, "ranges only allowed for vector selectors"),
    ("foo[5m][5m]", 7, "ranges only allowed for vector selectors"),
    ("foo[5m:][5m]", 8, "ranges only allowed for vector selectors"),
    ("test[5d] OFFSET 10s [10m:5s]", 0, "subquery is only allowed on instant vector, got matrix instead"),
    ('(foo + bar{nm="val"})[5m:][10m:5s]', 0,
     "subquery is only allowed on instant vector, got matrix instead"),
    ("(1)[5m:]", 0, "subquery is only allowed on instant vector, got scalar instead"),
    ("foo[5m-6m]", 4, "duration must be greater than 0"),
    ("foo[5m/(1m-1m)]", 4, "division by zero"),
    ("foo[5m%0]", 4, "modulo by zero"),
    ("foo[10^30]", 4, "duration is out of range"),
    ("foo[5m:(1m-2m)]", 7, "duration must be greater than 0"),
    ("foo[5m+]", 7, 'unexpected "]" in subquery or range selector, expected number, duration, step(), or range()'),
    ("foo[max(1m)]", 10, 'unexpected ")" in subquery or range selector, expected ","'),
    ("foo anchored smoothed", 0, "anchored and smoothed modifiers cannot be used together"),
    ("foo[5m:1m] smoothed", 0, "smoothed modifier is not supported for subqueries"),
    ('sum by ("foo)(some_metric{})', 8, "unterminated quoted string"),
    ('sum by ("") (x)', 8, 'invalid label name for grouping: ""'),
    ("sum without(==)(some_metric)", 12, "unexpected <op:==> in grouping opts, expected label"),
    ("sum without(,)(some_metric)", 12, 'unexpected "," in grouping opts, expected label'),
    ("sum without(foo,,)(some_metric)", 16, 'unexpected "," in grouping opts, expected label'),
    ("sum without(foo bar)(some_metric)", 16,
     'unexpected identifier "bar" in grouping opts, expected "," or ")"'),
    ("sum some_metric by (test)", 4, 'unexpected identifier "some_metric"'),
    ("sum (some_metric) by test", 21, 'unexpected identifier "test" in grouping opts, expected "("'),
    ("sum by (a) foo", 11, 'unexpected identifier "foo" in aggregation'),
    ("sum by (a)", 10, "unexpected end of input in aggregation"),
    ("sum () by (test)", 0, "no arguments for aggregate expression provided"),
    ("MIN keep_common (some_metric)", 4, 'unexpected identifier "keep_common"'),
    ("MIN (some_metric) keep_common", 18, 'unexpected identifier "keep_common"'),
    ("sum (some_metric) without (test) by (test)", 33, "unexpected <by>"),
    ("sum without (test) (some_metric) by (test)", 33, "unexpected <by>"),
    ("sum(x, y)", 0, "wrong number of arguments for aggregate expression provided, expected 1, got 2"),
    ("topk(some_metric)", 0,
     "wrong number of arguments for aggregate expression provided, expected 2, got 1"),
    ("topk(some_metric,)", 16, "trailing commas not allowed in function call args"),
    ("topk(some_metric, other_metric)", 5,
     "expected type scalar in aggregation parameter, got instant vector"),
    ("topk(foo, {})", 10, "vector selector must contain at least one non-empty matcher"),
    ("count_values(5, other_metric)", 13, "expected type string in aggregation parameter, got scalar"),
    ('quantile("a", x)', 9, "expected type scalar in aggregation parameter, got string"),
    ("sum(foo[5m])", 4, "expected type instant vector in aggregation expression, got range vector"),
    ("sum(1)", 4, "expected type instant vector in aggregation expression, got scalar"),
    ("floor()", 0, 'expected 1 argument(s) in call to "floor", got 0'),
    ("floor(some_metric, other_metric)", 0, 'expected 1 argument(s) in call to "floor", got 2'),
    ("floor(1)", 6, 'expected type instant vector in call to function "floor", got scalar'),
    ("hour(some_metric, some_metric, some_metric)", 0,
     'expected at most 1 argument(s) in call to "hour", got 3'),
    ("round(x, 1, 2)", 0, 'expected at most 2 argument(s) in call to "round", got 3'),
    ("label_join(x)", 0, 'expected at least 3 argument(s) in call to "label_join", got 1'),
    ('label_join(x, "a", ",", 1)', 24, 'expected type string in call to function "label_join", got scalar'),
    ("time(some_metric)", 0, 'expected 0 argument(s) in call to "time", got 1'),
    ("non_existent_function_far_bar()", 0, 'unknown function with name "non_existent_function_far_bar"'),
    ("holt_winters(x[5m], 0.5, 0.5)", 0, 'unknown function with name "holt_winters"'),
    ("unknown({})", 0, 'unknown function with name "unknown"'),
    ("rate(some_metric)", 5, 'expected type range vector in call to function "rate", got instant vector'),
    ("rate(avg)", 5, 'expected type range vector in call to function "rate", got instant vector'),
    ("rate(,x)", 5, 'unexpected ","'),
    ("abs(x y)", 6, 'unexpected identifier "y"'),
    ("-=", 1, 'unexpected "="'),
    ("++-++-+-+-<", 10, "unexpected <op:<>"),
    ("e-+=/(0)", 3, 'unexpected "="'),
    ("a>b()", 2, 'unknown function with name "b"'),
    ("`\\``", 3, "unterminated raw string"),
    ('"\\', 0, "escape sequence not terminated"),
    ('"\\c"', 0, "unknown escape sequence U+0063 'c'"),
    ('"\\x."', 0, "illegal character U+002E '.' in escape sequence"),
    ('info(rate(http_request_counter_total{}[5m]), target_info{foo="bar"})', 45,
     "expected label selectors only, got vector selector instead"),
    ('info(http_request_counter_total{namespace="zzz"}, {foo="bar"} == 1)', 50,
     "expected label selectors only"),
    ("info(x, 1)", 0, 'expected type instant vector in call to function "info", got scalar'),
    ("sum(", 4, "unclosed left parenthesis"),
    ("sum(rate(", 9, "unclosed left parenthesis"),
    ("x and on(a) group_right y", 0, 'no grouping allowed for "and" operation'),
    ("x == bool on(a) group_left(a) y", 2, 'label "a" must not occur in ON and GROUP clause at once'),
    ("foo @ start(", 12, "unclosed left parenthesis"),
]


@pytest.mark.parametrize(("src", "pos", "message"), INVALID)
def test_invalid_expression(src: str, pos: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_expr(src)
    assert info.value.reason == message
    assert info.value.position == pos


def test_invalid_regex_is_a_parse_error_at_the_matcher() -> None:
    with pytest.raises(ParseError) as info:
        parse_expr('foo{job="a", instance=~"("}')
    assert info.value.position == 13
    assert "(" in info.value.reason


def test_error_renders_line_and_column() -> None:
    with pytest.raises(ParseError) as info:
        parse_expr("sum(\n  rate(foo[5m])\n) + bar{")
    err = info.value
    assert (err.position, err.line, err.column) == (29, 3, 9)
    assert str(err) == "parse error: 3:9: unexpected end of input inside braces"


def test_first_column_is_one() -> None:
    with pytest.raises(ParseError) as info:
        parse_expr("*")
    assert (info.value.line, info.value.column) == (1, 1)
    assert str(info.value) == "parse error: 1:1: unexpected <op:*>"


def test_grammar_errors_win_over_type_errors() -> None:
    # The empty selector comes first, but unknown functions are found while parsing, before type checks.
    with pytest.raises(ParseError, match="unknown function"):
        parse_expr("{} + nope(x)")


def test_experimental_features_can_be_disabled() -> None:
    with pytest.raises(ParseError) as info:
        parse_expr("limitk(2, x)", features=NO_PROMQL_FEATURES)
    assert info.value.reason == (
        "limitk() is experimental and must be enabled with --enable-feature=promql-experimental-functions"
    )
    with pytest.raises(ParseError) as info:
        parse_expr("sort_by_label(x, \"a\")", features=NO_PROMQL_FEATURES)
    assert info.value.reason == 'function "sort_by_label" is not enabled'
    assert isinstance(parse_expr("rate(x[5m])", features=NO_PROMQL_FEATURES), Call)


@pytest.mark.parametrize("expr, name", [
    ("mad_over_time(x[5m])", "mad_over_time"),
    ('sort_by_label_desc(x, "a")', "sort_by_label_desc"),
    ("ts_of_first_over_time(x[5m])", "ts_of_first_over_time"),
])
def test_experimental_functions_are_refused_when_disabled(expr: str, name: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_expr(expr, features=NO_PROMQL_FEATURES)
    assert info.value.reason == f'function "{name}" is not enabled'
    assert isinstance(parse_expr(expr, features=PROMQL_FEATURES), Call)


def test_limit_ratio_is_refused_when_disabled() -> None:
    with pytest.raises(ParseError) as info:
        parse_expr("limit_ratio(0.5, x)", features=NO_PROMQL_FEATURES)
    assert info.value.reason.startswith("limit_ratio() is experimental")


def test_first_over_time_is_stable() -> None:
    node = parse_expr("first_over_time(x[5m])", features=NO_PROMQL_FEATURES)
    assert isinstance(node, Call) and node.func.name == "first_over_time"


# --- tree shape --------------------------------------------------------------------------------


def sel(name: str, **labels: str) -> VectorSelector:
    matchers = [Matcher(MatchType.EQ, k, v) for k, v in labels.items()]
    return VectorSelector(name, (*matchers, Matcher(MatchType.EQ, "__name__", name)))


def num(value: float) -> NumberLiteral:
    return NumberLiteral(value)


def test_unary_minus_binds_below_power() -> None:
    assert parse_expr("-2^2") == UnaryExpr("-", BinaryExpr("^", num(2), num(2)))
    assert parse_expr("-2 * 3") == BinaryExpr("*", num(-2), num(3))
    assert parse_expr("2 ^ -1") == BinaryExpr("^", num(2), num(-1))
    assert parse_expr("-a * b") == BinaryExpr(
        "*", UnaryExpr("-", sel("a")), sel("b"), matching=VectorMatching()
    )


def test_number_arithmetic_is_not_folded() -> None:
    assert parse_expr("1 + 2") == BinaryExpr("+", num(1), num(2))
    assert parse_expr("(1)") == ParenExpr(num(1))
    assert parse_expr("-(1)") == UnaryExpr("-", ParenExpr(num(1)))


def test_precedence_and_associativity() -> None:
    e = parse_expr("a or b and c unless d == e + f * g ^ h ^ i")
    assert isinstance(e, BinaryExpr) and e.op == "or"
    rhs = e.rhs
    assert isinstance(rhs, BinaryExpr) and rhs.op == "unless"
    assert isinstance(rhs.lhs, BinaryExpr) and rhs.lhs.op == "and"
    cmp = rhs.rhs
    assert isinstance(cmp, BinaryExpr) and cmp.op == "=="
    add = cmp.rhs
    assert isinstance(add, BinaryExpr) and add.op == "+"
    mul = add.rhs
    assert isinstance(mul, BinaryExpr) and mul.op == "*"
    power = mul.rhs
    assert isinstance(power, BinaryExpr) and power.op == "^"
    assert isinstance(power.rhs, BinaryExpr) and power.rhs.op == "^"  # right-associative
    left = parse_expr("a - b - c")
    assert isinstance(left, BinaryExpr) and isinstance(left.lhs, BinaryExpr)  # left-associative


def test_postfix_modifiers_bind_tightest() -> None:
    e = parse_expr("-a offset 5m + b @ 10")
    assert isinstance(e, BinaryExpr)
    assert e.lhs == UnaryExpr("-", VectorSelector("a", sel("a").matchers, offset=300_000))
    assert e.rhs == VectorSelector("b", sel("b").matchers, timestamp=10_000)
    assert parse_expr("sum_over_time(b[5m:] @ 10)") == Call(
        parse_expr("sum_over_time(b[5m])").func,  # type: ignore[union-attr]
        (SubqueryExpr(sel("b"), 300_000, timestamp=10_000),),
    )
    e = parse_expr("foo offset -1^1")
    assert e == BinaryExpr("^", VectorSelector("foo", sel("foo").matchers, offset=-1000), num(1))


def test_vector_matching_is_normalised() -> None:
    e = parse_expr("a + b")
    assert isinstance(e, BinaryExpr) and e.matching == VectorMatching()
    e = parse_expr("a and b")
    assert isinstance(e, BinaryExpr) and e.matching == VectorMatching(Cardinality.MANY_TO_MANY)
    e = parse_expr("a / on(x, y) group_left(z) b")
    assert isinstance(e, BinaryExpr)
    assert e.matching == VectorMatching(Cardinality.MANY_TO_ONE, ("x", "y"), True, ("z",))
    e = parse_expr("a - ignoring(x) group_right b")
    assert isinstance(e, BinaryExpr)
    assert e.matching == VectorMatching(Cardinality.ONE_TO_MANY, ("x",), False, ())
    e = parse_expr("1 + on() a")
    assert isinstance(e, BinaryExpr) and e.matching is None
    e = parse_expr("a > bool 1")
    assert isinstance(e, BinaryExpr) and e.return_bool and e.matching is None


def test_selector_fields() -> None:
    e = parse_expr('foo{a="1", b=~"x.*"} @ 1.2345 offset 1.5')
    assert isinstance(e, VectorSelector)
    assert e.name == "foo"
    assert [str(m) for m in e.matchers] == ['a="1"', 'b=~"x.*"', '__name__="foo"']
    assert (e.timestamp, e.offset, e.start_or_end) == (1235, 1500, None)
    assert e == parse_expr('foo{b=~"x.*", a="1"} offset 1500ms @ 1.2345')  # matcher order is irrelevant
    e = parse_expr("foo @ end()")
    assert isinstance(e, VectorSelector) and e.start_or_end is StartOrEnd.END
    e = parse_expr('{"my.metric", "my-label"="v"}')
    assert isinstance(e, VectorSelector) and e.name == ""
    assert {(m.name, m.value) for m in e.matchers} == {("__name__", "my.metric"), ("my-label", "v")}


def test_matrix_and_subquery_fields() -> None:
    e = parse_expr("foo[5m] offset 1m @ 100")
    assert isinstance(e, MatrixSelector)
    assert e.range == 300_000
    assert (e.vector_selector.offset, e.vector_selector.timestamp) == (60_000, 100_000)
    e = parse_expr("rate(foo[1m])[1h:] offset -5m @ start()")
    assert isinstance(e, SubqueryExpr)
    assert (e.range, e.step, e.offset, e.start_or_end) == (3_600_000, 0, -300_000, StartOrEnd.START)
    assert isinstance(e.expr, Call) and e.expr.func.name == "rate"
    e = parse_expr("foo[90:7.5]")
    assert isinstance(e, SubqueryExpr) and (e.range, e.step) == (90_000, 7_500)


def test_aggregation_fields() -> None:
    e = parse_expr("topk without (a, b) (5, foo)")
    assert e == AggregateExpr("topk", sel("foo"), num(5), ("a", "b"), True)
    e = parse_expr('count_values("v", foo) by (job)')
    assert e == AggregateExpr("count_values", sel("foo"), StringLiteral("v"), ("job",))
    assert parse_expr("sum by () (foo)") == parse_expr("sum(foo)")


def test_call_fields() -> None:
    e = parse_expr('label_replace(up, "a", "$1", "b", "(.*)")')
    assert isinstance(e, Call)
    assert e.func.name == "label_replace" and e.func.return_type is ValueType.VECTOR
    assert e.args[0] == sel("up")
    assert e.args[1:] == tuple(StringLiteral(s) for s in ("a", "$1", "b", "(.*)"))


def test_literals() -> None:
    e = parse_expr("NaN")
    assert isinstance(e, NumberLiteral) and math.isnan(e.value)
    assert e.bits == 0x7FF8000000000001  # Go's math.NaN()
    assert e == parse_expr("nan")
    d = parse_expr("1h30m")
    assert d == NumberLiteral(5400.0, True)
    assert d != NumberLiteral(5400.0)
    assert parse_expr("-0") == NumberLiteral(-0.0) != NumberLiteral(0.0)


def test_positive_infinity_prints_with_its_sign_like_prometheus() -> None:
    # A known wrinkle of Prometheus' printer that we reproduce: the sign makes "^" re-associate.
    assert format_expr(parse_expr("Inf ^ 2")) == "+Inf ^ 2"
    assert parse_expr("+Inf ^ 2") == UnaryExpr("+", BinaryExpr("^", num(math.inf), num(2)))


def test_types() -> None:
    cases = {
        "1": ValueType.SCALAR, '"s"': ValueType.STRING, "foo": ValueType.VECTOR,
        "foo[5m]": ValueType.MATRIX, "foo[5m:]": ValueType.MATRIX, "-foo": ValueType.VECTOR,
        "(1)": ValueType.SCALAR, "1 + foo": ValueType.VECTOR, "1 + 1": ValueType.SCALAR,
        "time()": ValueType.SCALAR, "sum(foo)": ValueType.VECTOR, "scalar(foo)": ValueType.SCALAR,
        "min_of(1, 2)": ValueType.SCALAR,
    }
    for src, want in cases.items():
        assert type_of(parse_expr(src)) is want, src
    assert ValueType.MATRIX.documented == "range vector"


def test_positions() -> None:
    e = parse_expr("sum(rate(foo[5m])) + -bar")
    assert isinstance(e, BinaryExpr)
    assert (e.pos, e.op_pos) == (0, 19)
    assert isinstance(e.lhs, AggregateExpr) and (e.lhs.pos, e.lhs.end) == (0, 18)
    assert isinstance(e.rhs, UnaryExpr) and e.rhs.pos == 21
    call = e.lhs.expr
    assert isinstance(call, Call) and (call.pos, call.end) == (4, 17)
    assert isinstance(call.args[0], MatrixSelector) and call.args[0].vector_selector.pos == 9


def test_walk_visits_every_node() -> None:
    nodes = walk(parse_expr("sum(rate(a[5m])) / on(x) b"))
    assert [type(n).__name__ for n in nodes] == [
        "BinaryExpr", "AggregateExpr", "Call", "MatrixSelector", "VectorSelector", "VectorSelector",
    ]


def test_a_1kb_query_round_trips() -> None:
    """A realistic 1 kB query parses and prints back to the same tree (its speed is measured in bench/)."""
    unit = (
        'sum by (job) (rate(http_requests_total{job=~"api|web", code!~"5.."}[5m] offset 1m)) '
        '/ on (job) group_left (team) max by (job, team) (team_info{env="prod"} @ 1700000000)'
    )
    q = " + ".join([unit] * 5) + ' or histogram_quantile(0.9, sum by (le) (rate(x_bucket[1h:5m])))'
    assert 800 < len(q) <= 1000
    tree = parse_expr(q)
    assert parse_expr(format_expr(tree)) == tree


def test_long_chains_need_no_deep_recursion() -> None:
    q = " or ".join(f"m{i}" for i in range(5000))
    assert format_expr(parse_expr(q)) == q
    stacked = "x" + "[1m:]" * 800
    with pytest.raises(ParseError, match="subquery is only allowed on instant vector, got matrix instead"):
        parse_expr(stacked)
    # The innermost problem is reported first, as Prometheus does.
    with pytest.raises(ParseError) as info:
        parse_expr("(" + "-{}-1" * 10000 + ")" + "[1m:]" * 1000)
    err = info.value
    assert (err.position, err.reason) == (2, "vector selector must contain at least one non-empty matcher")


def test_absurd_nesting_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_expr("(" * 3000 + "x" + ")" * 3000)


# --- selectors, durations, numbers ---------------------------------------------------------------


def test_parse_selector() -> None:
    assert parse_selector('up{job="x"}') == [Matcher.eq("job", "x"), Matcher.eq("__name__", "up")]
    assert parse_selector('{__name__=~"a.*", "b"!="c"}') == [
        Matcher(MatchType.RE, "__name__", "a.*"), Matcher(MatchType.NEQ, "b", "c"),
    ]
    assert parse_selector("sum") == [Matcher.eq("__name__", "sum")]
    assert parse_selector("{}") == []


@pytest.mark.parametrize(
    ("src", "pos", "message"),
    [
        ("", 0, "unexpected end of input"),
        ("up offset 5m", 3, "unexpected <offset>"),
        ("rate(x)", 4, 'unexpected "("'),
        ("up{a=~\"(\"}", 3, None),
    ],
)
def test_parse_selector_errors(src: str, pos: int, message: str | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_selector(src)
    assert info.value.position == pos
    if message is not None:
        assert info.value.reason == message


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0), ("0s", 0), ("1ms", 1), ("500ms", 500), ("1s", 1000), ("1m30s", 90_000),
        ("1h30m", 5_400_000), ("2d", 172_800_000), ("1w", 604_800_000), ("1y", 31_536_000_000),
        ("1y2w3d4h5m6s7ms", 31_536_000_000 + 1_209_600_000 + 259_200_000 + 14_400_000 + 306_007),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration string"),
        ("5", 'not a valid duration string: "5"'),
        ("-5m", 'not a valid duration string: "-5m"'),
        ("1.5h", 'unknown unit "." in duration "1.5h"'),
        ("5x", 'unknown unit "x" in duration "5x"'),
        ("5m1h", 'not a valid duration string: "5m1h"'),
        ("1s1s", 'not a valid duration string: "1s1s"'),
        ("300y", "duration out of range"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_duration(text)
    assert info.value.reason == message


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"), (1, "1ms"), (999, "999ms"), (1000, "1s"), (90_000, "1m30s"), (5_400_000, "1h30m"),
        (86_400_000, "1d"), (604_800_000, "1w"), (691_200_000, "8d"), (1_209_600_000, "2w"),
        (31_536_000_000, "1y"), (31_536_000_001, "365d1ms"), (7_776_000_000, "90d"), (-60_000, "-1m"),
        (3_723_004, "1h2m3s4ms"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text
    if ms >= 0:
        assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0), ("0x1f", 31.0), ("0X_1F", 31.0), ("0755", 493.0), ("08", 8.0), ("1_000", 1000.0),
        ("1e3", 1000.0), (".5", 0.5), ("5.", 5.0), ("Inf", math.inf), ("-inf", -math.inf),
        ("+Inf", math.inf), ("0x1.8p1", 3.0), ("99999999999999999999", 1e20),
    ],
)
def test_parse_number(text: str, value: float) -> None:
    assert parse_number(text) == value


def test_parse_number_nan_and_errors() -> None:
    assert float_bits(parse_number("NaN")) == 0x7FF8000000000001
    with pytest.raises(ValueError, match="invalid syntax"):
        parse_number("1_")
    with pytest.raises(ValueError, match="invalid syntax"):
        parse_number("0x10.5")
    with pytest.raises(ValueError, match="value out of range"):
        parse_number("1e400")


# --- properties -------------------------------------------------------------------------------

_NAMES = st.sampled_from(["foo", "bar", "sum", "by", "a:b", "offset", "start"])
_LABELS = st.sampled_from(["job", "le", "instance", "a_b"])
_VALUES = st.sampled_from(["", "x", "a.*", "x|y", "é", 'q\\"q', "back\\\\slash"])
_MATCH = st.sampled_from(["=", "!=", "=~", "!~"])


@st.composite
def _selector(draw: st.DrawFn) -> str:
    name = draw(_NAMES)
    matchers = draw(st.lists(st.tuples(_LABELS, _MATCH, _VALUES), max_size=3))
    body = ", ".join(f'{k}{op}"{v}"' for k, op, v in matchers)
    text = f"{name}{{{body}}}" if matchers else name
    if draw(st.booleans()):
        text += draw(st.sampled_from([" offset 5m", " offset -1h30m", " @ 100", " @ start()", " offset 7"]))
    return text


# Bare (-)Inf is left out: Prometheus prints Inf as "+Inf", and "+Inf ^ 2" re-parses as "+(Inf ^ 2)".
_SCALARS = st.sampled_from(["1", "2.5", "-3", "0x10", "5m", "time()", "(Inf)", "(-Inf)", "NaN", "pi()"])


_ARITH = st.sampled_from(["+", "-", "*", "/", "%", "^", "atan2"])


def _scalar_expr(depth: int) -> st.SearchStrategy[str]:
    if depth <= 0:
        return _SCALARS
    sub = _scalar_expr(depth - 1)
    return st.one_of(
        _SCALARS,
        st.builds(lambda a, op, b: f"{a} {op} {b}", sub, _ARITH, sub),
        st.builds(lambda a, op, b: f"({a}) {op} bool ({b})", sub, st.sampled_from(["==", "<", ">="]), sub),
        st.builds(lambda a: f"({a})", sub),
        st.builds(lambda a: f"-{a}", sub),
        st.builds(lambda v: f"scalar({v})", _vector_expr(depth - 1)),
    )


def _vector_expr(depth: int) -> st.SearchStrategy[str]:
    base = st.one_of(
        _selector(),
        st.builds(lambda n, lbl: f'rate({n}{{{lbl}="x"}}[5m])', _NAMES, _LABELS),
    )
    if depth <= 0:
        return base
    sub = _vector_expr(depth - 1)
    scalar = _scalar_expr(depth - 1)
    ops = st.sampled_from(["+", "-", "*", "/", "^", "==", "!=", "<", ">", "atan2", "and", "or", "unless"])
    modifiers = st.sampled_from(["", " bool", " on (job)", " ignoring (le)", " on () group_left ()",
                                 " ignoring (a_b) group_right (x)", " on (job) group_left (le, x)"])

    def binary(a: str, op: str, mod: str, b: str) -> str:
        if op in ("and", "or", "unless"):
            mod = " on (job)" if "group" in mod or "bool" in mod else mod
        elif "bool" in mod and op not in ("==", "!=", "<", ">"):
            mod = ""
        return f"({a}) {op}{mod} ({b})"

    return st.one_of(
        base,
        st.builds(binary, sub, ops, modifiers, sub),
        st.builds(lambda a, b: f"({a}) * ({b})", sub, scalar),
        st.builds(lambda a, b: f"({a}) > bool ({b})", scalar, sub),
        st.builds(lambda a: f"-{a}", sub),
        st.builds(lambda a: f"({a})", sub),
        st.builds(lambda agg, g, a: f"{agg}{g}({a})", st.sampled_from(["sum", "avg", "max", "group"]),
                  st.sampled_from(["", " by (job)", " without (le, job)", " by ()"]), sub),
        st.builds(lambda k, a: f"topk({k}, {a})", scalar, sub),
        st.builds(lambda a: f"sum_over_time(({a})[10m:1m])", sub),
        st.builds(lambda a: f'label_replace({a}, "x", "$1", "job", "(.*)")', sub),
    )


@settings(max_examples=300, deadline=None)
@given(st.one_of(_vector_expr(3), _scalar_expr(3)))
def test_random_expressions_round_trip(src: str) -> None:
    from thanostools.core.promql.parser.printer import pretty

    expr = parse_expr(src)
    printed = format_expr(expr)
    assert parse_expr(printed) == expr
    assert format_expr(parse_expr(printed)) == printed
    assert parse_expr(pretty(expr, max_width=20)) == expr


@pytest.mark.parametrize(("expr", "message", "position"), [
    ("rate(x[5m] anchored)", "anchored modifier is experimental and not enabled", 5),
    ("x smoothed", "smoothed modifier is experimental and not enabled", 0),
    ("a + on(b) fill(0) c", "binop fill modifiers are experimental and not enabled", 0),
    ("sum(a) * fill_left(1) c", "binop fill modifiers are experimental and not enabled", 0),
])
def test_extended_selectors_and_fill_need_their_features(expr: str, message: str, position: int) -> None:
    only_functions = frozenset({"promql-experimental-functions"})
    with pytest.raises(ParseError) as info:
        parse_expr(expr, features=only_functions)
    assert (info.value.reason, info.value.position) == (message, position)
    assert format_expr(parse_expr(expr)) != ""


def test_fill_modifiers_are_parsed_and_printed() -> None:
    node = parse_expr("a + on(x) group_left(y) fill_left(1) fill_right(-2) b")
    assert isinstance(node, BinaryExpr) and node.matching is not None
    assert (node.matching.fill_lhs, node.matching.fill_rhs) == (1.0, -2.0)
    assert format_expr(node) == "a + on (x) group_left (y) fill_left (1) fill_right (-2) b"
    assert format_expr(parse_expr("a / fill(NaN) b")) == "a / fill (NaN) b"
    assert format_expr(parse_expr("a + fill")) == "a + fill"
