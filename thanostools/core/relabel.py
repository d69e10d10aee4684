"""Prometheus relabel configs and Thanos deletion requests (FORMATS.md §11).

Regexes are RE2 (google-re2), anchored as ``^(?s:…)$`` like Prometheus 3.x; templates follow Go's
``Regexp.Expand`` (``$1``, ``${1}``, ``$name``, ``$$``; ``$1x`` is the group named ``1x``). Every config is
validated when loaded and a bad one is one ``ConfigError`` line naming the entry.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from thanostools.core.config.yamlfile import load_yaml, read_config_text
from thanostools.core.errors import ConfigError, ParseError
from thanostools.core.labels import Labels, from_pairs
from thanostools.core.matchers import Matcher, MatchType, compile_anchored
from thanostools.core.tsdb.tombstones import merge_intervals

ACTIONS = ("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep",
           "lowercase", "uppercase")
DEFAULT_SEPARATOR = ";"
DEFAULT_REGEX = "(.*)"
DEFAULT_REPLACEMENT = "$1"
_KEYS = ("source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action")
_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TARGET_WITH_VARS = re.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$", re.ASCII)
_NEEDS_TARGET = frozenset({"replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"})
_NO_REPLACEMENT = frozenset({"lowercase", "uppercase", "keepequal", "dropequal"})


# --- Go template expansion ------------------------------------------------------------------------------


def _is_name_char(c: str) -> bool:
    """Go's unicode.IsLetter / unicode.IsDigit / '_' (digits are category Nd only)."""
    cat = unicodedata.category(c)
    return c == "_" or cat.startswith("L") or cat == "Nd"


def _extract(s: str) -> tuple[str, int, str] | None:
    """A group reference at the start of ``s`` (after the ``$``): (name, number or -1, rest), None if malformed."""
    brace = s.startswith("{")
    body = s[1:] if brace else s
    i = 0
    while i < len(body) and _is_name_char(body[i]):
        i += 1
    if i == 0:
        return None
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None
        i += 1
    num = -1
    if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) <= 9:
        num = int(name)
    return name, num, body[i:]


def expand_template(template: str, match: Any, groupindex: Mapping[str, int]) -> str:
    """Go ``Regexp.Expand``: references to missing or non-participating groups expand to ``""``, a ``$`` that
    does not start a well-formed reference is copied literally."""
    out: list[str] = []
    rest = template
    while True:
        before, dollar, after = rest.partition("$")
        out.append(before)
        if not dollar:
            return "".join(out)
        if after.startswith("$"):
            out.append("$")
            rest = after[1:]
            continue
        ref = _extract(after)
        if ref is None:
            out.append("$")
            rest = after
            continue
        name, num, rest = ref
        index = num if num >= 0 else groupindex.get(name, -1)
        if 0 <= index <= match.re.groups:
            out.append(match.group(index) or "")


# --- relabel configs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelabelConfig:
    source_labels: tuple[str, ...] = ()
    separator: str = DEFAULT_SEPARATOR
    regex: str = DEFAULT_REGEX
    modulus: int = 0
    target_label: str = ""
    replacement: str = DEFAULT_REPLACEMENT
    action: str = "replace"
    compiled: Any = field(default=None, compare=False, repr=False)
    utf8: bool = field(default=False, compare=False, repr=False)  # label-name validity: any UTF-8 vs legacy

    def to_meta(self) -> dict[str, Any]:
        """The form Thanos writes into ``thanos.rewrites[].relabels_applied`` (regex without anchors)."""
        out: dict[str, Any] = {}
        if self.source_labels:
            out["source_labels"] = list(self.source_labels)
        out["separator"] = self.separator
        out["regex"] = self.regex
        if self.modulus:
            out["modulus"] = self.modulus
        if self.target_label:
            out["target_label"] = self.target_label
        out["replacement"] = self.replacement
        out["action"] = self.action
        return out


def _string(doc: Mapping[str, Any], key: str, default: str, where: str) -> str:
    if key not in doc:
        return default
    value = doc[key]
    if value is None:
        return ""  # YAML null decodes to Go's zero value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string")
    return value


def _label_names(doc: Mapping[str, Any], where: str, utf8: bool) -> tuple[str, ...]:
    value = doc.get("source_labels")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: source_labels must be a list of label names")
    for name in value:
        if not valid_label_name(name, utf8):
            raise ConfigError(f"{where}: {name!r} is not a valid label name")
    return tuple(value)


def _uint(value: object) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value)
        return n if n < 2**64 else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def _modulus(doc: Mapping[str, Any], where: str) -> int:
    value = doc.get("modulus")
    n = 0 if value is None else _uint(value)
    if n is None:
        raise ConfigError(f"{where}: modulus must be an unsigned integer")
    return n


def valid_label_name(name: str, utf8: bool = False) -> bool:
    return bool(name) if utf8 else _LEGACY_NAME.match(name) is not None


def parse_relabel_config(doc: object, where: str = "relabel config", *, utf8: bool = False) -> RelabelConfig:
    """One relabel config from its YAML mapping, with Prometheus' defaults and validation (§11.1, §11.4)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be a mapping of {', '.join(_KEYS)}")
    unknown = sorted(str(k) for k in doc if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
    action = _string(doc, "action", "replace", where).lower()
    if not action:
        raise ConfigError(f"{where}: relabel action cannot be empty")
    if action not in ACTIONS:
        raise ConfigError(f"{where}: unknown relabel action {action!r}")
    regex = _string(doc, "regex", DEFAULT_REGEX, where)
    try:
        compiled = compile_anchored(regex)
    except ParseError:
        raise ConfigError(f"{where}: invalid regex {regex!r}") from None
    cfg = RelabelConfig(
        source_labels=_label_names(doc, where, utf8), separator=_string(doc, "separator", DEFAULT_SEPARATOR, where),
        regex=regex, modulus=_modulus(doc, where), target_label=_string(doc, "target_label", "", where),
        replacement=_string(doc, "replacement", DEFAULT_REPLACEMENT, where), action=action, compiled=compiled,
        utf8=utf8,
    )
    problem = _validate(cfg, "source_labels" in doc and doc["source_labels"] is not None, utf8)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return cfg


def _validate(c: RelabelConfig, has_sources: bool, utf8: bool) -> str | None:
    a = c.action
    if a == "hashmod" and c.modulus == 0:
        return "relabel configuration for hashmod requires non-zero modulus"
    if a in _NEEDS_TARGET and not c.target_label:
        return f"relabel configuration for {a} action requires 'target_label' value"
    if a == "replace" and not _valid_target_template(c.target_label, utf8):
        return f"{c.target_label!r} is invalid 'target_label' for {a} action"
    if a in _NO_REPLACEMENT | {"hashmod"} and not valid_label_name(c.target_label, utf8):
        return f"{c.target_label!r} is invalid 'target_label' for {a} action"
    if a in _NO_REPLACEMENT and c.replacement != DEFAULT_REPLACEMENT:
        return f"'replacement' can not be set for {a} action"
    if a == "labelmap" and not _valid_target_template(c.replacement, utf8):
        return f"{c.replacement!r} is invalid 'replacement' for {a} action"
    if a in ("keepequal", "dropequal") and (c.regex != DEFAULT_REGEX or c.modulus or
                                             c.separator != DEFAULT_SEPARATOR):
        return f"{a} action requires only 'source_labels' and 'target_label', and no other fields"
    if a in ("labeldrop", "labelkeep") and (has_sources or c.target_label or c.modulus or
                                             c.separator != DEFAULT_SEPARATOR or c.replacement != DEFAULT_REPLACEMENT):
        return f"{a} action requires only 'regex', and no other fields"
    return None


def _valid_target_template(value: str, utf8: bool) -> bool:
    if "$" not in value:
        return valid_label_name(value, utf8)
    return bool(value) if utf8 else _TARGET_WITH_VARS.match(value) is not None


def parse_relabel_configs(data: object, *, utf8: bool = False) -> list[RelabelConfig]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError("relabel config: expected a YAML list of relabel configs")
    return [parse_relabel_config(doc, f"relabel config #{i + 1}", utf8=utf8) for i, doc in enumerate(data)]


class _GoLoader(yaml.SafeLoader):
    """Scalars stay text except null, as Go's YAML decoder gives them to string fields (``yes`` stays "yes")."""


_GoLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_relabel_configs(text: str, *, utf8: bool = False) -> list[RelabelConfig]:
    return parse_relabel_configs(load_yaml(text, "relabel config", loader=_GoLoader), utf8=utf8)


def load_relabel_config_file(path: str, *, utf8: bool = False) -> list[RelabelConfig]:
    return load_relabel_configs(read_config_text(path, "relabel config file"), utf8=utf8)


# --- applying -------------------------------------------------------------------------------------------


def _lower(s: str) -> str:
    """Go strings.ToLower: simple per-rune case mapping (Python's full mapping differs for a few runes)."""
    out = []
    for c in s:
        low = c.lower()
        out.append(low if len(low) == 1 else ("i" if c == "\u0130" else c))
    return "".join(out)


def _upper(s: str) -> str:
    out = []
    for c in s:
        up = c.upper()
        out.append(up if len(up) == 1 else c)
    return "".join(out)


def _hashmod(value: str, modulus: int) -> str:
    digest = hashlib.md5(value.encode(), usedforsecurity=False).digest()
    return str(int.from_bytes(digest[8:], "big") % modulus)


def _step(c: RelabelConfig, lb: dict[str, str]) -> bool:
    """Apply one config to the mutable label set; False when the series is dropped."""
    val = c.separator.join(lb.get(name, "") for name in c.source_labels)
    a = c.action
    if a == "keep":
        return c.compiled.match(val) is not None
    if a == "drop":
        return c.compiled.match(val) is None
    if a == "keepequal":
        return lb.get(c.target_label, "") == val
    if a == "dropequal":
        return lb.get(c.target_label, "") != val
    if a == "replace":
        _replace(c, lb, val)
    elif a == "hashmod":
        _set(lb, c.target_label, _hashmod(val, c.modulus))
    elif a == "lowercase":
        _set(lb, c.target_label, _lower(val))
    elif a == "uppercase":
        _set(lb, c.target_label, _upper(val))
    else:
        _on_names(c, lb)
    return True


def _set(lb: dict[str, str], name: str, value: str) -> None:
    if value:
        lb[name] = value
    else:
        lb.pop(name, None)


def _replace(c: RelabelConfig, lb: dict[str, str], val: str) -> None:
    m = c.compiled.match(val)
    if m is None:
        return
    groups = c.compiled.groupindex
    target = expand_template(c.target_label, m, groups)
    if not valid_label_name(target, c.utf8):
        return
    _set(lb, target, expand_template(c.replacement, m, groups))


def _on_names(c: RelabelConfig, lb: dict[str, str]) -> None:
    """labelmap, labeldrop, labelkeep: decided on the label names present before this step."""
    for name, value in list(lb.items()):
        m = c.compiled.match(name)
        if (c.action == "labeldrop" and m is not None) or (c.action == "labelkeep" and m is None):
            del lb[name]
        elif c.action == "labelmap" and m is not None:
            new = expand_template(c.replacement, m, c.compiled.groupindex)
            if new:
                lb[new] = value


def relabel(labels: Labels, configs: Sequence[RelabelConfig]) -> Labels:
    """The relabelled label set (sorted, empty values removed); ``()`` when the series is dropped."""
    lb = dict(labels)
    for c in configs:
        if not _step(c, lb):
            return ()
    return from_pairs(lb.items())


# --- deletion requests ----------------------------------------------------------------------------------

_MATCH_TYPE_CODES = {MatchType.EQ: 0, MatchType.NEQ: 1, MatchType.RE: 2, MatchType.NRE: 3}


@dataclass(frozen=True)
class DeletionRequest:
    """A Thanos deletion request: series matching every matcher lose the samples in ``intervals`` (inclusive
    ms bounds), or everything when there are none."""

    matchers: tuple[Matcher, ...]
    intervals: tuple[tuple[int, int], ...] = ()
    request_id: str = ""
    selector: str = ""

    def matches(self, labels: Labels) -> bool:
        """Thanos' rule: a matcher on a label the series does not have never matches (even ``x=""``)."""
        values = dict(labels)
        for m in self.matchers:
            v = values.get(m.name, "")
            if v == "" or not m.matches(v):
                return False
        return True

    def to_meta(self) -> dict[str, Any]:
        """The form Thanos writes into ``thanos.rewrites[].deletions_applied`` (Go default JSON)."""
        out: dict[str, Any] = {"matchers": [{"Type": _MATCH_TYPE_CODES[m.type], "Name": m.name, "Value": m.value}
                                            for m in self.matchers]}
        if self.intervals:
            out["intervals"] = [{"Mint": a, "Maxt": b} for a, b in self.intervals]
        if self.request_id:
            out["request_id"] = self.request_id
        return out


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _intervals(value: object, where: str) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: intervals must be a list of {{mint, maxt}}")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"mint", "maxt"}:
            raise ConfigError(f"{where}: each interval needs exactly mint and maxt (milliseconds)")
        mint, maxt = _int(item.get("mint", 0)), _int(item.get("maxt", 0))
        if mint is None or maxt is None:
            raise ConfigError(f"{where}: interval mint and maxt must be integers (milliseconds)")
        if mint > maxt:
            raise ConfigError(f"{where}: interval mint {mint} is after maxt {maxt}")
        out.append((mint, maxt))
    return tuple(out)


def parse_deletion_request(doc: object, where: str = "deletion request") -> DeletionRequest:
    from thanostools.core.promql.parser.parse import parse_selector

    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be a mapping with matchers and optional intervals, request_id")
    unknown = sorted(str(k) for k in doc if k not in ("matchers", "intervals", "request_id"))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
    selector = doc.get("matchers")
    if not isinstance(selector, str) or not selector.strip():
        raise ConfigError(f"{where}: matchers must be a series selector such as '{{__name__=\"x\"}}'")
    try:
        matchers = tuple(parse_selector(selector))
    except ParseError as exc:
        raise ConfigError(f"{where}: matchers {selector!r}: {exc}") from None
    request_id = doc.get("request_id") or ""
    return DeletionRequest(matchers, _intervals(doc.get("intervals"), where), str(request_id), selector)


def parse_deletion_requests(data: object) -> list[DeletionRequest]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError("deletion config: expected a YAML list of deletion requests")
    return [parse_deletion_request(doc, f"deletion request #{i + 1}") for i, doc in enumerate(data)]


def load_deletion_requests(text: str) -> list[DeletionRequest]:
    return parse_deletion_requests(load_yaml(text, "deletion config", loader=_GoLoader))


def load_deletion_config_file(path: str) -> list[DeletionRequest]:
    return load_deletion_requests(read_config_text(path, "deletion config file"))


def deletion_intervals(labels: Labels, requests: Iterable[DeletionRequest]) -> list[tuple[int, int]] | None:
    """What the requests delete from one series: None = nothing, ``[]`` = the whole series, else the merged
    intervals (sorted, overlapping or adjacent ones joined)."""
    found: list[tuple[int, int]] = []
    hit = False
    for req in requests:
        if not req.matches(labels):
            continue
        if not req.intervals:
            return []
        hit = True
        found.extend(req.intervals)
    return merge_intervals(found) if hit else None


__all__ = [
    "ACTIONS",
    "DeletionRequest",
    "RelabelConfig",
    "deletion_intervals",
    "expand_template",
    "load_deletion_config_file",
    "load_deletion_requests",
    "load_relabel_config_file",
    "load_relabel_configs",
    "parse_deletion_request",
    "parse_deletion_requests",
    "parse_relabel_config",
    "parse_relabel_configs",
    "relabel",
    "valid_label_name",
]
