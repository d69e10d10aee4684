"""Query results as Prometheus answers them: ``data`` (+ ``stats``), ``warnings``, ``infos``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thanostools.core.render.apijson import go_json_float, render_success
from thanostools.core.render.fastjson import query_data_json

if TYPE_CHECKING:
    from thanostools.core.promql.engine import QueryResult

TRUNCATED = "results truncated due to limit"


def stats_json(eval_s: float, samples: int, peak: int) -> str:
    """Prometheus' ``stats`` object (timings in seconds; only evaluation is timed separately here)."""
    t = go_json_float(round(eval_s, 9))
    timings = (f'{{"evalTotalTime":{t},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{t},'
               f'"execQueueTime":0,"execTotalTime":{t}}}')
    return f'{{"timings":{timings},"samples":{{"totalQueryableSamples":{samples},"peakSamples":{peak}}}}}'


def query_body(result: QueryResult, *, limit: int = 0, with_stats: bool = False, eval_s: float = 0.0) -> str:
    warnings = list(result.warnings)
    if limit and len(result.series) > limit:
        result.series = result.series[:limit]
        warnings.append(TRUNCATED)
    data = query_data_json(result)
    if with_stats:
        data = data[:-1] + f',"stats":{stats_json(eval_s, result.stats.samples_loaded, result.stats.peak_samples)}}}'
    return render_success(data, warnings=warnings, infos=result.infos)
