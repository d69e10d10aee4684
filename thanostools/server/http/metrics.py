"""Self-metrics on ``/metrics`` (prometheus-client), one registry per daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from thanostools import __version__

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _CacheCollector(Collector):
    """Reads cache counters at scrape time (they live in the core's range cache)."""

    def __init__(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        memory_hits, disk_hits, misses = self.read()
        hits = CounterMetricFamily("thanos_tools_cache_hits", "Byte ranges served from the cache.",
                                   labels=["cache"])
        hits.add_metric(["memory"], memory_hits)
        hits.add_metric(["disk"], disk_hits)
        yield hits
        yield CounterMetricFamily("thanos_tools_cache_misses", "Byte ranges that had to be fetched from the bucket.",
                                  value=misses)


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self.read().items():
            yield GaugeMetricFamily(f"thanos_tools_{name}", name.replace("_", " ").capitalize() + ".", value=value)


class ServerMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series, as in Prometheus
        self.registry = r = CollectorRegistry(auto_describe=True)
        from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

        for c in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):
            r.register(c)
        Info("thanos_tools_build", "Build information.", registry=r).info({"version": __version__})
        self.requests = Counter("thanos_tools_http_requests", "HTTP requests by handler, method and status code.",
                                ["handler", "method", "code"], registry=r)
        self.request_seconds = Histogram("thanos_tools_http_request_duration_seconds",
                                         "HTTP request latency by handler and status code.",
                                         ["handler", "code"], buckets=_LATENCY, registry=r)
        self.query_seconds = Histogram("thanos_tools_query_duration_seconds",
                                       "PromQL evaluation time by endpoint (queue wait excluded).",
                                       ["endpoint"], buckets=_LATENCY, registry=r)
        self.queries_inflight = Gauge("thanos_tools_queries_inflight", "Queries running now.", registry=r)
        self.queries_rejected = Counter("thanos_tools_queries_rejected",
                                        "Queries refused by a limit (rate, concurrency).", ["reason"], registry=r)
        self.blocks_loaded = Gauge("thanos_tools_blocks_loaded", "Blocks served after the last sync.", registry=r)
        self.blocks_broken = Gauge("thanos_tools_blocks_broken", "Blocks skipped: unreadable meta.json.", registry=r)
        self.syncs = Counter("thanos_tools_block_syncs", "Block syncs by result.", ["result"], registry=r)
        self.sync_seconds = Histogram("thanos_tools_block_sync_duration_seconds", "Time a block sync took.",
                                      buckets=_LATENCY, registry=r)
        self.last_sync = Gauge("thanos_tools_block_last_sync_timestamp_seconds",
                               "When the last successful sync finished.", registry=r)
        self.bucket_bytes = Counter("thanos_tools_bucket_fetched_bytes", "Bytes fetched from the bucket.",
                                    registry=r)
        self.grpc_calls = Counter("thanos_tools_grpc_calls", "gRPC calls by method and status code.",
                                  ["method", "code"], registry=r)
        self.security_events = Counter("thanos_tools_security_events",
                                       "Integrity failures (checksum mismatches) and refused credentials.",
                                       ["kind"], registry=r)
        self.reloads = Counter("thanos_tools_config_reloads", "Config reloads by result.", ["result"], registry=r)

    def watch_cache(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self.registry.register(_CacheCollector(read))

    def watch_state(self, read: Callable[[], dict[str, float]]) -> None:
        self.registry.register(_StateCollector(read))
