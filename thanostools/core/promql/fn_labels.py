"""Label and ordering functions: label_replace, label_join, sort*, absent."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import re2

from thanostools.core.errors import EvalError
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql.fn_window import absent_labels
from thanostools.core.promql.handlers import handler
from thanostools.core.promql.parser.ast import Call, StringLiteral
from thanostools.core.promql.value import Value, Vector
from thanostools.core.promql.vecops import merge_duplicates, unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

_QUIET = re2.Options()
_QUIET.log_errors = False


def string_arg(node: Call, i: int) -> str:
    arg = unwrap_parens(node.args[i])
    if not isinstance(arg, StringLiteral):
        raise EvalError(f"{node.func.name}: argument {i + 1} must be a string literal")
    return arg.value


def valid_label_name(name: str) -> bool:
    """Prometheus 3.x (UTF-8 names): any non-empty valid UTF-8 string."""
    return bool(name) and not any(0xD800 <= ord(c) <= 0xDFFF for c in name)


def _set_label(labels: Labels, name: str, value: str) -> Labels:
    d = dict(labels)
    if value:
        d[name] = value
    else:
        d.pop(name, None)
    return tuple(sorted(d.items()))


def _relabelled(ev: Evaluator, vec: Vector, labels: list[Labels], dst: str) -> Vector:
    drop = np.zeros(len(vec), np.bool_) if dst == METRIC_NAME else vec.drop_name
    return merge_duplicates(Vector(labels, vec.values, vec.present, drop, hist=vec.hist), ev.check_deadline)


@handler("label_replace", histograms=True)
def _label_replace(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    dst, repl, src, pattern = (string_arg(node, i) for i in range(1, 5))
    try:
        regex = re2.compile(f"^(?s:{pattern})$", options=_QUIET)
    except re2.error:
        raise EvalError(f"invalid regular expression in label_replace(): {pattern}") from None
    if not valid_label_name(dst):
        raise EvalError(f"invalid destination label name in label_replace(): {dst}")
    vec = ev.eval_vector(node.args[0], ts)
    labels: list[Labels] = []
    changed = np.zeros(len(vec), np.bool_)
    for i, lbls in enumerate(vec.labels):
        m = regex.match(get(lbls, src))
        if m is None:
            labels.append(lbls)
            continue
        labels.append(_set_label(lbls, dst, go_expand(repl, m, regex)))
        changed[i] = True
    drop = np.where(changed, False, vec.drop_name) if dst == METRIC_NAME else vec.drop_name
    return merge_duplicates(Vector(labels, vec.values, vec.present, drop, hist=vec.hist), ev.check_deadline)


@handler("label_join", histograms=True)
def _label_join(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    dst = string_arg(node, 1)
    sep = string_arg(node, 2)
    srcs = [string_arg(node, i) for i in range(3, len(node.args))]
    if not valid_label_name(dst):
        raise EvalError(f"invalid destination label name in label_join(): {dst}")
    vec = ev.eval_vector(node.args[0], ts)
    labels = [_set_label(lbls, dst, sep.join(get(lbls, s) for s in srcs)) for lbls in vec.labels]
    return _relabelled(ev, vec, labels, dst)


def go_expand(template: str, m: Any, regex: Any) -> str:
    """Go ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    out: list[str] = []
    i, n = 0, len(template)
    names: dict[str, int] = dict(getattr(regex, "groupindex", {}) or {})
    ngroups = int(getattr(regex, "groups", 0))
    while i < n:
        c = template[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        i += 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        name, end = _extract_name(template, i)
        if name is None:
            out.append("$")
            continue
        i = end
        idx = _group_number(name)
        if idx is None:
            idx = names.get(name)
        if idx is not None and idx <= ngroups:
            g = m.group(idx)
            if g is not None:
                out.append(g)
    return "".join(out)


def _extract_name(s: str, i: int) -> tuple[str | None, int]:
    brace = i < len(s) and s[i] == "{"
    j = i + 1 if brace else i
    k = j
    while k < len(s) and (s[k].isalnum() or s[k] == "_"):
        k += 1
    if k == j:
        return None, i
    name = s[j:k]
    if brace:
        if k >= len(s) or s[k] != "}":
            return None, i
        k += 1
    return name, k


def _group_number(name: str) -> int | None:
    if not name.isdigit() or not name.isascii():
        return None
    if len(name) > 1 and name[0] == "0":
        return None
    value = int(name)
    return value if value < 10**8 else None


# -- ordering ----------------------------------------------------------------------------------

@handler("sort", "sort_desc")
def _sort(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    if not ev.is_instant or not len(vec):
        return vec
    vals = vec.values[:, 0]
    nan = np.isnan(vals)
    key = -vals if node.func.name == "sort_desc" else vals
    order = np.lexsort((np.where(nan, 0.0, key), nan))
    return vec.take(order)


def natural_less(a: str, b: str) -> bool:
    """facette/natsort ``Compare``: digit runs compare as numbers, other runs as strings."""
    ca = _chunks(a)
    cb = _chunks(b)
    for i, x in enumerate(ca):
        if i >= len(cb):
            return False
        y = cb[i]
        if x.isdigit() and y.isdigit() and x.isascii() and y.isascii():
            if int(x) == int(y):
                if i == len(ca) - 1:
                    return True
                if i == len(cb) - 1:
                    return False
                continue
            return int(x) < int(y)
        if x == y:
            if i == len(ca) - 1:
                return True
            if i == len(cb) - 1:
                return False
            continue
        return x < y
    return False


_CHUNK = re.compile(r"(\d+|\D+)")


def _chunks(s: str) -> list[str]:
    return _CHUNK.findall(s)


@handler("sort_by_label", "sort_by_label_desc", histograms=True)
def _sort_by_label(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    if not ev.is_instant or not len(vec):
        return vec
    names = [string_arg(node, i) for i in range(1, len(node.args))]
    desc = node.func.name == "sort_by_label_desc"

    def cmp(i: int, j: int) -> int:
        a, b = vec.labels[i], vec.labels[j]
        for name in names:
            va, vb = get(a, name), get(b, name)
            if va == vb:
                continue
            less = natural_less(va, vb)
            return (1 if less else -1) if desc else (-1 if less else 1)
        base = (a > b) - (a < b)
        return -base if desc else base

    order = sorted(range(len(vec)), key=functools.cmp_to_key(cmp))
    return vec.take(order)


@handler("absent", histograms=True)
def _absent(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    steps = ts.shape[0]
    any_present = np.asarray(vec.present.any(axis=0)) if len(vec) else np.zeros(steps, np.bool_)
    return Vector([absent_labels(node.args[0])], np.ones((1, steps)), ~any_present[None, :],
                  np.zeros(1, np.bool_))
