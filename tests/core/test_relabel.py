"""Relabel configs (FORMATS.md §11.1–§11.4) and Thanos deletion requests (§11.6)."""

from __future__ import annotations

import hashlib

import pytest

from thanostools.core.errors import ConfigError
from thanostools.core.labels import Labels, from_dict
from thanostools.core.relabel import (
    deletion_intervals,
    load_deletion_requests,
    load_relabel_configs,
    parse_relabel_config,
    relabel,
)

SERIES = from_dict({"__name__": "http_requests_total", "job": "api", "instance": "10.0.0.1:9090", "path": "/a"})


def apply(yaml_text: str, labels: Labels = SERIES) -> dict[str, str]:
    return dict(relabel(labels, load_relabel_configs(yaml_text)))


# --- actions ---------------------------------------------------------------------------------------------


def test_replace_defaults_copy_and_set() -> None:
    out = apply("- source_labels: [job]\n  target_label: team\n")
    assert out["team"] == "api"  # regex (.*), replacement $1, separator ;
    out = apply("- source_labels: [job, path]\n  target_label: x\n")
    assert out["x"] == "api;/a"
    out = apply("- source_labels: [job, path]\n  separator: '|'\n  regex: 'a(p)i\\|(.*)'\n"
                "  target_label: x\n  replacement: '$2-$1'\n")
    assert out["x"] == "/a-p"


def test_replace_no_match_is_a_no_op_and_regex_is_anchored() -> None:
    assert apply("- source_labels: [job]\n  regex: pi\n  target_label: x\n") == dict(SERIES)
    assert apply("- source_labels: [job]\n  regex: ap\n  target_label: x\n") == dict(SERIES)
    assert apply("- source_labels: [job]\n  regex: a.i\n  target_label: x\n  replacement: hit\n")["x"] == "hit"


def test_dot_matches_newline() -> None:
    labels = from_dict({"__name__": "m", "msg": "a\nb"})
    assert apply("- source_labels: [msg]\n  regex: 'a.b'\n  target_label: ok\n  replacement: yes\n", labels)["ok"] \
        == "yes"


def test_replace_empty_result_deletes_target_and_missing_label_is_empty() -> None:
    assert "job" not in apply("- source_labels: [nope]\n  target_label: job\n")
    assert apply("- target_label: env\n  replacement: prod\n")["env"] == "prod"


def test_replace_expanded_target_and_invalid_expanded_target() -> None:
    out = apply("- source_labels: [job]\n  regex: '(.*)'\n  target_label: 'lbl_${1}'\n  replacement: v\n")
    assert out["lbl_api"] == "v"
    # An expanded target that is not a valid label name leaves the series unchanged (Prometheus 3.x).
    assert apply("- source_labels: [path]\n  target_label: 'x$1'\n  replacement: v\n") == dict(SERIES)


def test_keep_drop() -> None:
    assert apply("- source_labels: [job]\n  regex: api\n  action: keep\n") == dict(SERIES)
    assert apply("- source_labels: [job]\n  regex: db\n  action: keep\n") == {}
    assert apply("- source_labels: [job]\n  regex: api\n  action: drop\n") == {}
    assert apply("- source_labels: [job]\n  regex: a\n  action: drop\n") == dict(SERIES)
    assert apply("- source_labels: [job]\n  regex: API\n  action: Keep\n") == {}  # action is case-insensitive


def test_keepequal_dropequal() -> None:
    labels = from_dict({"__name__": "m", "a": "x", "b": "x", "c": "y"})
    assert apply("- source_labels: [a]\n  target_label: b\n  action: keepequal\n", labels) == dict(labels)
    assert apply("- source_labels: [a]\n  target_label: c\n  action: keepequal\n", labels) == {}
    assert apply("- source_labels: [a]\n  target_label: b\n  action: dropequal\n", labels) == {}
    assert apply("- source_labels: [a]\n  target_label: c\n  action: dropequal\n", labels) == dict(labels)


def test_hashmod_is_md5_low_eight_bytes() -> None:
    out = apply("- source_labels: [instance, job]\n  modulus: 1000\n  target_label: shard\n  action: hashmod\n")
    digest = hashlib.md5(b"10.0.0.1:9090;api").digest()
    assert out["shard"] == str(int.from_bytes(digest[8:], "big") % 1000)
    # a value computed by Prometheus: hashmod of "foo" with modulus 10
    foo = from_dict({"__name__": "m", "a": "foo"})
    assert apply("- source_labels: [a]\n  modulus: 10\n  target_label: h\n  action: hashmod\n", foo)["h"] == \
        str(int.from_bytes(hashlib.md5(b"foo").digest()[8:], "big") % 10)


def test_labelmap_keeps_originals() -> None:
    labels = from_dict({"__name__": "m", "__meta_k8s_pod": "p1", "__meta_k8s_ns": "n1", "x": "1"})
    out = apply("- action: labelmap\n  regex: '__meta_k8s_(.+)'\n", labels)
    assert out == {**dict(labels), "pod": "p1", "ns": "n1"}
    out = apply("- action: labelmap\n  regex: '__meta_(k8s)_(.+)'\n  replacement: '${1}_$2'\n", labels)
    assert out["k8s_pod"] == "p1"


def test_labeldrop_labelkeep() -> None:
    assert apply("- action: labeldrop\n  regex: 'inst.*|path'\n") == {"__name__": "http_requests_total", "job": "api"}
    assert apply("- action: labelkeep\n  regex: '__name__|job'\n") == {"__name__": "http_requests_total", "job": "api"}


def test_lowercase_uppercase_like_go() -> None:
    labels = from_dict({"__name__": "m", "a": "MiXeD İ ß"})
    assert apply("- source_labels: [a]\n  target_label: l\n  action: lowercase\n", labels)["l"] == "mixed i ß"
    assert apply("- source_labels: [a]\n  target_label: u\n  action: uppercase\n", labels)["u"] == "MIXED İ ß"


def test_steps_run_in_order_and_stop_at_drop() -> None:
    text = ("- source_labels: [job]\n  target_label: job\n  replacement: 'x_$1'\n"
            "- source_labels: [job]\n  regex: 'x_api'\n  action: drop\n"
            "- target_label: never\n  replacement: set\n")
    assert apply(text) == {}


# --- Go template pitfalls ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("replacement", "expected"), [
    ("$1x", ""),  # the group named "1x", which does not exist
    ("${1}x", "ax"),
    ("$$1", "$1"),
    ("$$$1", "$a"),
    ("$", "$"),
    ("$-", "$-"),
    ("${1", "${1"),
    ("$name", "b"),
    ("${name}_", "b_"),
    ("$name_", ""),  # the group named "name_"
    ("$9", ""),  # no such group
    ("$0", "a;b"),
    ("$01", ""),  # leading zero: a name, not a number
    ("\\1", "\\1"),  # Python's syntax means nothing here
])
def test_template_expansion(replacement: str, expected: str) -> None:
    labels = from_dict({"__name__": "m", "a": "a", "b": "b"})
    text = (f"- source_labels: [a, b]\n  regex: '(a);(?P<name>b)'\n  target_label: out\n"
            f"  replacement: '{replacement}'\n")
    assert dict(relabel(labels, load_relabel_configs(text))).get("out", "") == expected


def test_optional_group_not_participating_expands_empty() -> None:
    out = apply("- source_labels: [job]\n  regex: '(x)?(api)'\n  target_label: o\n  replacement: '[$1|$2]'\n")
    assert out["o"] == "[|api]"


def test_re2_syntax_only() -> None:
    with pytest.raises(ConfigError, match="invalid regex"):
        load_relabel_configs("- source_labels: [job]\n  regex: '(?=a)'\n  target_label: x\n")  # no look-ahead
    with pytest.raises(ConfigError, match="invalid regex"):
        load_relabel_configs("- source_labels: [job]\n  regex: '(a)\\1'\n  target_label: x\n")  # no backrefs


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("doc", "message"), [
    ({"action": "bogus"}, "unknown relabel action 'bogus'"),
    ({"action": None}, "action cannot be empty"),
    ({"action": "hashmod", "target_label": "x"}, "requires non-zero modulus"),
    ({"action": "replace"}, "requires 'target_label'"),
    ({"action": "lowercase"}, "requires 'target_label'"),
    ({"action": "keepequal", "source_labels": ["a"]}, "requires 'target_label'"),
    ({"target_label": "1abc"}, "invalid 'target_label'"),
    ({"target_label": "a-b"}, "invalid 'target_label'"),
    ({"target_label": "${1}-x"}, "invalid 'target_label'"),
    ({"action": "lowercase", "target_label": "x", "replacement": "y"}, "'replacement' can not be set"),
    ({"action": "dropequal", "target_label": "x", "regex": "a"}, "requires only 'source_labels'"),
    ({"action": "labeldrop", "regex": "a", "target_label": "x"}, "requires only 'regex'"),
    ({"action": "labelkeep", "regex": "a", "source_labels": []}, "requires only 'regex'"),
    ({"action": "labelmap", "regex": "a", "replacement": "1$1"}, "invalid 'replacement'"),
    ({"action": "hashmod", "target_label": "a b", "modulus": 2}, "invalid 'target_label'"),
    ({"source_labels": ["ok", "not-ok"], "target_label": "x"}, "'not-ok' is not a valid label name"),
    ({"target_label": "x", "modulus": -1}, "modulus must be an unsigned integer"),
    ({"target_label": "x", "unknown": 1}, "unknown field 'unknown'"),
    ({"target_label": "x", "regex": "("}, "invalid regex"),
])
def test_validation_errors_are_one_line(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_relabel_config(doc, "relabel config #3")
    assert "\n" not in str(err.value) and str(err.value).startswith("relabel config #3: ")


def test_valid_templates_and_defaults_accepted() -> None:
    cfg = parse_relabel_config({"source_labels": ["a"], "target_label": "p_${1}_$name"})
    assert (cfg.separator, cfg.regex, cfg.replacement, cfg.action) == (";", "(.*)", "$1", "replace")
    assert parse_relabel_config({"action": "labelmap", "regex": "(.*)", "replacement": "x_$1"}).action == "labelmap"
    assert parse_relabel_config({"target_label": "a-b"}, utf8=True).target_label == "a-b"


def test_load_errors() -> None:
    with pytest.raises(ConfigError, match="expected a YAML list"):
        load_relabel_configs("action: keep\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_relabel_configs("- [unclosed\n")
    with pytest.raises(ConfigError, match="relabel config #2: must be a mapping"):
        load_relabel_configs("- target_label: x\n- just a string\n")


def test_explicit_empty_regex_matches_only_empty() -> None:
    assert apply("- source_labels: [nope]\n  regex: ''\n  target_label: e\n  replacement: hit\n")["e"] == "hit"
    assert "e" not in apply("- source_labels: [job]\n  regex: ''\n  target_label: e\n  replacement: hit\n")


def test_meta_form() -> None:
    (cfg,) = load_relabel_configs("- source_labels: [a]\n  regex: 'x(.*)'\n  target_label: b\n")
    assert cfg.to_meta() == {"source_labels": ["a"], "separator": ";", "regex": "x(.*)", "target_label": "b",
                             "replacement": "$1", "action": "replace"}
    (cfg,) = load_relabel_configs("- action: hashmod\n  source_labels: [a]\n  modulus: 4\n  target_label: h\n")
    assert list(cfg.to_meta()) == ["source_labels", "separator", "regex", "modulus", "target_label", "replacement",
                                   "action"]


# --- deletion requests -----------------------------------------------------------------------------------


def test_deletion_requests_parse_and_meta_form() -> None:
    reqs = load_deletion_requests(
        "- matchers: '{__name__=\"k8s_app_metric37\", __blockgen_target__=~\"7.*\"}'\n"
        "- matchers: 'k8s_app_metric1{a!=\"x\"}'\n  intervals:\n    - mint: 10\n      maxt: 20\n"
        "  request_id: r1\n")
    assert reqs[0].to_meta() == {"matchers": [{"Type": 0, "Name": "__name__", "Value": "k8s_app_metric37"},
                                              {"Type": 2, "Name": "__blockgen_target__", "Value": "7.*"}]}
    assert reqs[1].to_meta() == {"matchers": [{"Type": 1, "Name": "a", "Value": "x"},
                                              {"Type": 0, "Name": "__name__", "Value": "k8s_app_metric1"}],
                                 "intervals": [{"Mint": 10, "Maxt": 20}], "request_id": "r1"}


def test_deletion_matchers_never_match_missing_labels() -> None:
    (absent_eq,) = load_deletion_requests("- matchers: '{x=\"\"}'\n")
    (absent_ne,) = load_deletion_requests("- matchers: '{x!=\"a\"}'\n")
    (present_ne,) = load_deletion_requests("- matchers: '{job!=\"db\"}'\n")
    assert not absent_eq.matches(SERIES) and not absent_ne.matches(SERIES)
    assert present_ne.matches(SERIES)


def test_deletion_intervals_union_and_whole_series() -> None:
    reqs = load_deletion_requests(
        "- matchers: '{job=\"api\"}'\n  intervals: [{mint: 10, maxt: 20}, {mint: 50, maxt: 60}]\n"
        "- matchers: '{path=\"/a\"}'\n  intervals: [{mint: 15, maxt: 30}, {mint: 61, maxt: 70}]\n"
        "- matchers: '{job=\"db\"}'\n")
    assert deletion_intervals(SERIES, reqs) == [(10, 30), (50, 70)]
    assert deletion_intervals(from_dict({"__name__": "m", "job": "db"}), reqs) == []
    assert deletion_intervals(from_dict({"__name__": "m", "job": "x"}), reqs) is None


@pytest.mark.parametrize(("text", "message"), [
    ("- intervals: []\n", "matchers must be a series selector"),
    ("- matchers: '{a=}'\n", "deletion request #1: matchers"),
    ("- matchers: '{a=\"b\"}'\n  intervals: [{mint: 5, maxt: 1}]\n", "mint 5 is after maxt 1"),
    ("- matchers: '{a=\"b\"}'\n  intervals: [{mint: a, maxt: 1}]\n", "must be integers"),
    ("- matchers: '{a=\"b\"}'\n  other: 1\n", "unknown field 'other'"),
    ("matchers: x\n", "expected a YAML list"),
])
def test_deletion_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_deletion_requests(text)
    assert "\n" not in str(err.value)
