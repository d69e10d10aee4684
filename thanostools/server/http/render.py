"""Query results as Prometheus answers them: ``data`` (+ ``stats``), ``warnings``, ``infos``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thanostools.core.render.apijson import render_success
from thanostools.core.render.fastjson import query_data_json
from thanostools.core.render.statsjson import stats_json

if TYPE_CHECKING:
    from thanostools.core.promql.engine import QueryResult

TRUNCATED = "results truncated due to limit"


def query_body(result: QueryResult, *, limit: int = 0, stats: str = "") -> str:
    """The answer; ``stats`` is the request's ``stats`` parameter: any value adds the stats object, ``all`` with
    the samples read per step."""
    warnings = list(result.warnings)
    if limit and len(result.series) > limit:
        result.series = result.series[:limit]
        warnings.append(TRUNCATED)
    data = query_data_json(result)
    if stats:
        data = data[:-1] + f',"stats":{stats_json(result.stats, per_step=stats == "all")}}}'
    return render_success(data, warnings=warnings, infos=result.infos)
