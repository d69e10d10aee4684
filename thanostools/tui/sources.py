"""One interface over the places the TUI can query: a bucket (read here), a remote StoreAPI, an HTTP API.

Everything here blocks and is called from Textual thread workers, never from the UI thread.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thanostools.core.constants import RESOLUTIONS_BY_NAME
from thanostools.core.errors import QueryError, UnsupportedError
from thanostools.core.inspect import BlockInfo
from thanostools.core.labels import METRIC_NAME, Labels
from thanostools.core.matchers import Matcher
from thanostools.core.promql.engine import QueryResult
from thanostools.core.promql.features import NO_PROMQL_FEATURES
from thanostools.core.series import DEFAULT_BATCH_SAMPLES, LabelResult, Querier, SelectHints, SeriesStream
from thanostools.tui.httpsource import ApiResponse, PromHTTPClient

if TYPE_CHECKING:
    from thanostools.core.catalog import BlockCatalog
    from thanostools.core.promql.engine import PromQLEngine
    from thanostools.core.workspace import BucketWorkspace

METRIC_COUNT_QUERY = 'count by (__name__) ({__name__=~".+"})'


@dataclass(frozen=True)
class QuerySettings:
    """The Thanos query options of the console."""

    dedup: bool = True
    replica_labels: tuple[str, ...] = ("replica",)
    partial_response: bool = True
    max_source_resolution: str = "auto"  # auto, raw, 5m, 1h
    lookback_delta_ms: int = 300_000
    timeout_s: float = 120.0
    promql_features: frozenset[str] = NO_PROMQL_FEATURES  # --enable-feature names that change PromQL

    def resolution_ms(self, step_ms: int) -> int:
        """``auto`` is step/5 for range queries and raw for instant ones (the Thanos querier's rule)."""
        if self.max_source_resolution == "auto":
            return step_ms // 5
        return RESOLUTIONS_BY_NAME[self.max_source_resolution]


class Cancelled(QueryError):
    """The user cancelled the query."""

    def __init__(self) -> None:
        super().__init__("query cancelled")


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class Outcome:
    """One finished query: the result, the exact API JSON, and what the stats line shows."""

    query: str
    kind: str  # "instant" or "range"
    result: QueryResult
    raw_json: str
    elapsed_s: float
    samples: int
    time_ms: int = 0
    start_ms: int = 0
    end_ms: int = 0
    step_ms: int = 0
    samples_what: str = "samples queried"  # Prometheus's totalQueryableSamples, or what the source could tell
    peak_samples: int | None = None  # Prometheus's peakSamples, when known
    warnings: list[str] = field(default_factory=list)

    @property
    def series_count(self) -> int:
        if self.result.result_type in ("scalar", "string"):
            return 0
        return len(self.result.series)


def returned_samples(result: QueryResult) -> int:
    if result.result_type in ("scalar", "string"):
        return 1
    return sum(int(s.t.shape[0]) for s in result.series)


class Source(ABC):
    """What the console and the explorer need from a source of series."""

    kind: str = ""
    workspace: BucketWorkspace | None = None  # only bucket sources have blocks to browse
    scope: BlockInfo | None = None
    clock: Callable[[], float] = staticmethod(time.perf_counter)  # elapsed times (tests freeze it)

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def instant(self, query: str, time_ms: int, settings: QuerySettings, cancel: CancelToken) -> Outcome: ...

    @abstractmethod
    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int, settings: QuerySettings,
              cancel: CancelToken) -> Outcome: ...

    @abstractmethod
    def label_names(self, selector: str | None, start_ms: int, end_ms: int) -> list[str]: ...

    @abstractmethod
    def label_values(self, name: str, selector: str | None, start_ms: int, end_ms: int) -> list[str]: ...

    def metric_counts(self, start_ms: int, end_ms: int) -> dict[str, int]:
        """Series per metric name (for the metrics explorer)."""
        outcome = self.instant(METRIC_COUNT_QUERY, end_ms, QuerySettings(), CancelToken())
        out: dict[str, int] = {}
        for s in outcome.result.series:
            name = dict(s.labels).get(METRIC_NAME, "")
            if name and s.v.shape[0]:
                out[name] = int(float(s.v[-1]))
        return out

    def scoped(self, ulid: str | None) -> Source:
        raise UnsupportedError(f"a {self.kind} source has no blocks to scope queries to")


def _query_catalog(workspace: BucketWorkspace, scope: BlockInfo | None) -> BlockCatalog:
    """The blocks queries read: the scoped block (if any), compaction leftovers left out."""
    from thanostools.core.catalog import CompactionLeftovers, MetaFilter, Selected
    from thanostools.core.inspect import BlockFilter

    only: list[MetaFilter] = [Selected(BlockFilter(ids=(scope.ulid,)))] if scope is not None else []
    return workspace.catalog.view(*only, CompactionLeftovers())


# --- sources evaluated by our own PromQL engine ---------------------------------------------------


class _CancellableQuerier(Querier):
    """Checks the cancel token around every selection, so Esc stops a query between selectors."""

    def __init__(self, inner: Querier, cancel: CancelToken) -> None:
        self.inner = inner
        self.cancel = cancel

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        self.cancel.check()
        stream = self.inner.select(matchers, mint, maxt, hints, batch_samples=batch_samples)
        self.cancel.check()
        return stream

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return self.inner.label_names(matchers, mint, maxt)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return self.inner.label_values(name, matchers, mint, maxt)


def _matchers(selector: str | None) -> list[Matcher]:
    if not selector:
        return []
    from thanostools.core.promql.parser.parse import parse_selector

    return parse_selector(selector)


class QuerierSource(Source):
    """A source whose series come from a core ``Querier``; PromQL runs in this process."""

    @abstractmethod
    def querier(self, settings: QuerySettings, resolution_ms: int) -> Querier:
        """A querier for one query (partial response is decided per query)."""

    @abstractmethod
    def label_querier(self) -> Querier: ...

    def _engine(self, settings: QuerySettings, cancel: CancelToken, step_ms: int) -> PromQLEngine:
        from thanostools.core.promql.engine import PromQLEngine, QueryOptions

        cancel.check()
        querier = _CancellableQuerier(self.querier(settings, settings.resolution_ms(step_ms)), cancel)
        return PromQLEngine(querier, QueryOptions(lookback_delta_ms=settings.lookback_delta_ms,
                                                  timeout_s=settings.timeout_s,
                                                  features=settings.promql_features))

    @staticmethod
    def _finish(result: QueryResult) -> str:
        """The API JSON of a result (without partial response a failing block or source already failed it)."""
        from thanostools.core.render.apijson import render_success
        from thanostools.core.render.fastjson import query_data_json

        return render_success(query_data_json(result), warnings=result.warnings, infos=result.infos)

    def instant(self, query: str, time_ms: int, settings: QuerySettings, cancel: CancelToken) -> Outcome:
        engine = self._engine(settings, cancel, 0)
        began = self.clock()
        result = engine.instant(query, time_ms)
        elapsed = self.clock() - began
        return Outcome(query, "instant", result, self._finish(result), elapsed, result.stats.samples.total,
                       time_ms=time_ms, peak_samples=result.stats.samples.peak,
                       warnings=[*result.warnings, *result.infos])

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int, settings: QuerySettings,
              cancel: CancelToken) -> Outcome:
        engine = self._engine(settings, cancel, step_ms)
        began = self.clock()
        result = engine.range(query, start_ms, end_ms, step_ms)
        elapsed = self.clock() - began
        return Outcome(query, "range", result, self._finish(result), elapsed, result.stats.samples.total,
                       start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, peak_samples=result.stats.samples.peak,
                       warnings=[*result.warnings, *result.infos])

    def label_names(self, selector: str | None, start_ms: int, end_ms: int) -> list[str]:
        return self.label_querier().label_names(_matchers(selector), start_ms, end_ms).values

    def label_values(self, name: str, selector: str | None, start_ms: int, end_ms: int) -> list[str]:
        return self.label_querier().label_values(name, _matchers(selector), start_ms, end_ms).values


class BucketSource(QuerierSource):
    """Blocks of a bucket (local dir, S3, …) read by this process, optionally only one of them (``scope``)."""

    kind = "bucket"
    workspace: BucketWorkspace

    def __init__(self, workspace: BucketWorkspace, scope: BlockInfo | None = None) -> None:
        self.workspace = workspace
        self.scope = scope
        self.catalog = _query_catalog(workspace, scope)

    def describe(self) -> str:
        text = f"bucket {self.workspace.bucket.url}"
        return f"{text} · block {self.scope.ulid}" if self.scope is not None else text

    def querier(self, settings: QuerySettings, resolution_ms: int) -> Querier:
        from thanostools.core.dedup import deduplicated
        from thanostools.core.partial import PartialResponse
        from thanostools.core.querier import bucket_querier

        blocks = bucket_querier(self.catalog, PartialResponse(settings.partial_response),
                                max_source_resolution_ms=resolution_ms)
        return deduplicated(blocks, settings.replica_labels, settings.dedup)

    def label_querier(self) -> Querier:
        return self.querier(QuerySettings(dedup=False), 0)

    def refresh(self) -> None:
        """List the bucket again (after marks changed); blocks no longer listed are closed."""
        self.workspace.scan(refresh=True)

    def scoped(self, ulid: str | None) -> Source:
        scoped = BucketSource(self.workspace, self.workspace.block_info(ulid) if ulid else None)
        scoped.clock = self.clock
        return scoped

    def metric_counts(self, start_ms: int, end_ms: int) -> dict[str, int]:
        """Series per metric from the blocks' postings (no samples read): per stream (external labels)
        the largest block's count, summed over streams."""
        per_stream: dict[Labels, dict[str, int]] = {}
        for info in self.catalog.blocks():
            if info.meta.max_time <= start_ms or info.meta.min_time > end_ms:
                continue
            index = self.catalog.open_block(info.ulid).index
            names = index.label_values(METRIC_NAME)
            counts = per_stream.setdefault(info.meta.external_labels, {})
            for name, postings in zip(names, index.postings_many([(METRIC_NAME, n) for n in names]), strict=True):
                counts[name] = max(counts.get(name, 0), int(postings.shape[0]))
        out: dict[str, int] = {}
        for counts in per_stream.values():
            for name, n in counts.items():
                out[name] = out.get(name, 0) + n
        return out


class StoreSource(QuerierSource):
    """A remote Thanos StoreAPI (sidecar, store gateway, ``thanos-tools serve``) queried over gRPC."""

    kind = "store"

    def __init__(self, address: str, make_querier: Callable[[QuerySettings, int], Querier]) -> None:
        self.address = address
        self._make = make_querier

    def describe(self) -> str:
        return f"StoreAPI {self.address}"

    def metric_counts(self, start_ms: int, end_ms: int) -> dict[str, int]:
        """Counted by PromQL over the range's end (the StoreAPI has no cheap per-metric counts)."""
        return super().metric_counts(start_ms, end_ms)

    def querier(self, settings: QuerySettings, resolution_ms: int) -> Querier:
        return self._make(settings, resolution_ms)

    def label_querier(self) -> Querier:
        return self._make(QuerySettings(dedup=False), 0)


# --- an HTTP query API ------------------------------------------------------------------------------


STATS_PARAM = ("stats", "all")  # ask for the query's stats, as Grafana's query inspector does


def _sample_stats(result: QueryResult, resp: ApiResponse) -> tuple[int, str, int | None]:
    """(samples, what they are, peak) from the answer's ``stats`` object; the samples returned when there is none
    (an API that ignores ``stats``)."""
    stats = resp.data.get("stats") if isinstance(resp.data, dict) else None
    samples = stats.get("samples") if isinstance(stats, dict) else None
    if isinstance(samples, dict) and isinstance(samples.get("totalQueryableSamples"), int):
        peak = samples.get("peakSamples")
        return samples["totalQueryableSamples"], "samples queried", peak if isinstance(peak, int) else None
    return returned_samples(result), "samples returned", None


class HttpSource(Source):
    """Any Prometheus-compatible HTTP API; Thanos options are sent as the Thanos querier's parameters."""

    kind = "http"

    def __init__(self, client: PromHTTPClient) -> None:
        self.client = client

    def describe(self) -> str:
        return f"HTTP {self.client.url}"

    @staticmethod
    def thanos_params(settings: QuerySettings) -> list[tuple[str, str]]:
        params = [("dedup", str(settings.dedup).lower()),
                  ("partial_response", str(settings.partial_response).lower()),
                  ("max_source_resolution", settings.max_source_resolution if
                   settings.max_source_resolution != "raw" else "0s"),
                  ("lookback_delta", f"{settings.lookback_delta_ms}ms"),
                  ("timeout", f"{int(settings.timeout_s * 1000)}ms")]
        params += [("replicaLabels[]", r) for r in settings.replica_labels]
        return params

    def instant(self, query: str, time_ms: int, settings: QuerySettings, cancel: CancelToken) -> Outcome:
        cancel.check()
        began = self.clock()
        result, resp = self.client.query(query, time_ms, [*self.thanos_params(settings), STATS_PARAM])
        cancel.check()
        samples, what, peak = _sample_stats(result, resp)
        return Outcome(query, "instant", result, resp.body, self.clock() - began, samples, time_ms=time_ms,
                       samples_what=what, peak_samples=peak, warnings=[*resp.warnings, *resp.infos])

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int, settings: QuerySettings,
              cancel: CancelToken) -> Outcome:
        cancel.check()
        began = self.clock()
        result, resp = self.client.query_range(query, start_ms, end_ms, step_ms,
                                               [*self.thanos_params(settings), STATS_PARAM])
        cancel.check()
        samples, what, peak = _sample_stats(result, resp)
        return Outcome(query, "range", result, resp.body, self.clock() - began, samples, start_ms=start_ms,
                       end_ms=end_ms, step_ms=step_ms, samples_what=what, peak_samples=peak,
                       warnings=[*resp.warnings, *resp.infos])

    def label_names(self, selector: str | None, start_ms: int, end_ms: int) -> list[str]:
        return self.client.labels([selector] if selector else [], start_ms, end_ms)

    def label_values(self, name: str, selector: str | None, start_ms: int, end_ms: int) -> list[str]:
        return self.client.label_values(name, [selector] if selector else [], start_ms, end_ms)
