"""Prometheus's query ``stats`` object (``stats=…`` on the query API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thanostools.core.render.numbers import go_json_float

if TYPE_CHECKING:
    from thanostools.core.promql.engine import QueryStats


def _seconds(s: float) -> str:
    return go_json_float(max(0.0, s))


def stats_json(stats: QueryStats, *, per_step: bool = False) -> str:
    """The object as Prometheus writes it: timings in seconds, then samples (per step only when asked)."""
    t = stats.timings
    timings = (f'{{"evalTotalTime":{_seconds(t.eval_total)},"resultSortTime":{_seconds(t.result_sort)},'
               f'"queryPreparationTime":{_seconds(t.query_preparation)},"innerEvalTime":{_seconds(t.inner_eval)},'
               f'"execQueueTime":{_seconds(t.exec_queue)},"execTotalTime":{_seconds(t.exec_total)}}}')
    s = stats.samples
    steps = ""
    if per_step:
        points = ",".join(f"[{go_json_float(ms / 1000)},{n}]" for ms, n in s.steps())
        steps = f'"totalQueryableSamplesPerStep":[{points}],'
    return (f'{{"timings":{timings},"samples":{{{steps}"totalQueryableSamples":{s.total},'
            f'"peakSamples":{s.peak}}}}}')
