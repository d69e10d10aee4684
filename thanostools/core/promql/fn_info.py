"""``info(v [, {data-label selector}])`` (experimental, Prometheus 3.x): series enriched with the data labels of
the info series (``target_info`` unless the selector names others) that share their identifying labels
(``instance`` and ``job``).

Per step, as Prometheus: an info series counts if it has a sample within the lookback (the newest one wins when
two share a signature; the same time is a "duplicate series" error); data labels the base series already has
are kept from the base; two info series giving one label different values is a "conflicting label" error; with a
data-label selector only the selected labels are added, and a base series no info series matches is dropped
unless every data matcher matches the empty string. Series that are themselves info series are left as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.labels import METRIC_NAME, Labels, format_labels, get
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.promql.handlers import handler
from thanostools.core.promql.parser.ast import Call, Expr, VectorSelector, walk
from thanostools.core.promql.value import Value, Vector
from thanostools.core.promql.vecops import DUPLICATE_LABELSET

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

TARGET_INFO = "target_info"
IDENTIFYING_LABELS = ("instance", "job")

_Signature = tuple[str, tuple[tuple[str, str], ...]]


@handler("info", histograms=True)
def _info(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    base = ev.eval_vector(node.args[0], ts)
    selector = node.args[1] if len(node.args) > 1 else None
    data_matchers: dict[str, list[Matcher]] = {}
    if isinstance(selector, VectorSelector):
        for m in selector.matchers:
            data_matchers.setdefault(m.name, []).append(m)
    name_matchers = data_matchers.pop(METRIC_NAME, [])
    if not isinstance(selector, VectorSelector):
        name_matchers = [Matcher(MatchType.EQ, METRIC_NAME, TARGET_INFO)]
    ignored = np.array([all(m.matches(get(lbls, METRIC_NAME)) for m in name_matchers) if name_matchers else False
                        for lbls in base.labels], np.bool_).reshape(-1)
    info = _info_series(ev, node.args[0], ts, base, ignored, name_matchers, data_matchers)
    return _combine(base, ignored, info, data_matchers)


def _identifying(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple((n, v) for n, v in labels if n in IDENTIFYING_LABELS)


def _info_series(ev: Evaluator, arg: Expr, ts: np.ndarray, base: Vector, ignored: np.ndarray,
                 name_matchers: list[Matcher], data_matchers: dict[str, list[Matcher]]) -> Vector:
    """The info series that could match some base series, looked up at every step (with their sample times)."""
    wanted: dict[str, set[str]] = {}
    for lbls, skip in zip(base.labels, ignored.tolist(), strict=True):
        if not skip:
            for name, value in _identifying(lbls):
                if value:
                    wanted.setdefault(name, set()).add(value)
    if not wanted:
        return Vector.empty(int(ts.shape[0]))
    matchers = list(name_matchers) or [Matcher(MatchType.EQ, METRIC_NAME, TARGET_INFO)]
    matchers += [m for ms in data_matchers.values() for m in ms]
    first = next((n for n in walk(arg) if isinstance(n, VectorSelector)), None)
    probe = VectorSelector("", tuple(matchers), offset=first.offset if first else 0,
                           timestamp=first.timestamp if first else None,
                           start_or_end=first.start_or_end if first else None)
    found = ev.select_vector(probe, ts, with_ts=True)
    keep = [i for i, lbls in enumerate(found.labels)
            if all(get(lbls, name) in values for name, values in wanted.items())]
    return found.take(keep) if len(keep) < len(found) else found


def _combine(base: Vector, ignored: np.ndarray, info: Vector, data_matchers: dict[str, list[Matcher]]) -> Vector:
    steps = base.steps
    out_rows: dict[Labels, int] = {}
    sources: list[tuple[int, int, int]] = []  # (output row, base row, step)
    info_names = sorted({get(lbls, METRIC_NAME) for lbls in info.labels})
    info_sigs = [(get(lbls, METRIC_NAME), _identifying(lbls)) for lbls in info.labels]
    drop_unmatched = any(not m.matches("") for ms in data_matchers.values() for m in ms)
    for k in range(steps):
        by_sig = _newest_info(info, info_sigs, k)
        for i in np.flatnonzero(base.present[:, k]).tolist():
            labels = base.labels[i]
            if not ignored[i]:
                enriched = _enrich(labels, info_names, by_sig, info, data_matchers)
                if enriched is None:
                    if drop_unmatched:
                        continue
                else:
                    labels = enriched
            row = out_rows.setdefault(labels, len(out_rows))
            sources.append((row, i, k))
    return _assemble(base, out_rows, sources)


def _newest_info(info: Vector, sigs: list[_Signature], k: int) -> dict[_Signature, int]:
    """Per signature, the info series whose sample at step k is the newest (info is read with sample times)."""
    times = info.sample_ts if info.sample_ts is not None else np.zeros(info.present.shape, np.int64)
    chosen: dict[_Signature, int] = {}
    for j in np.flatnonzero(info.present[:, k]).tolist():
        sig, t = sigs[j], int(times[j, k])
        prev = chosen.get(sig)
        if prev is not None:
            prev_t = int(times[prev, k])
            if prev_t == t:
                raise EvalError(f"found duplicate series for info metric: existing {format_labels(info.labels[prev])} "
                                f"@ {prev_t}, new {format_labels(info.labels[j])} @ {t}")
            if prev_t > t:
                continue
        chosen[sig] = j
    return chosen


def _enrich(labels: Labels, info_names: list[str], by_sig: dict[_Signature, int], info: Vector,
            data_matchers: dict[str, list[Matcher]]) -> Labels | None:
    """The base labels with the matching info series' data labels; None when no info series matches."""
    own = dict(labels)
    ident = _identifying(labels)
    added: dict[str, str] = {}
    seen = False
    for name in info_names:
        j = by_sig.get((name, ident))
        if j is None:
            continue
        seen = True
        for lname, value in info.labels[j]:
            if lname == METRIC_NAME or (data_matchers and lname not in data_matchers):
                continue
            if added.get(lname, value) != value:
                raise EvalError(f"conflicting label: {lname}")
            if lname not in own:
                added[lname] = value
    if not seen:
        return None
    return tuple(sorted({**own, **added}.items()))


def _assemble(base: Vector, out_rows: dict[Labels, int], sources: list[tuple[int, int, int]]) -> Vector:
    n, steps = len(out_rows), base.steps
    values = np.zeros((n, steps))
    present = np.zeros((n, steps), np.bool_)
    hist = None if base.hist is None else np.full((n, steps), None, object)
    drop = np.zeros(n, np.bool_)
    for row, i, k in sources:
        if present[row, k]:
            raise EvalError(DUPLICATE_LABELSET)
        present[row, k] = True
        values[row, k] = base.values[i, k]
        if hist is not None and base.hist is not None:
            hist[row, k] = base.hist[i, k]
        drop[row] = base.drop_name[i]
    return Vector(list(out_rows), values, present, drop, hist=hist) if n else Vector.empty(steps)
