"""Deterministic synthetic scrape data that looks like a small fleet of services.

Four jobs (api, db, cache, node) with many instances each expose counters, gauges and classic
histograms — or, with ``native_histograms``, integer native histograms (schema 3, the client libraries' default
bucket factor 1.1; one series per histogram, as a native-only scrape stores it). Every random number is a hash
of (seed, series or entity identity, scrape index), so
a series' samples depend only on the spec and its labels, never on batching; the math runs in
bulk over batches of series that share a value kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import xxhash

from thanostools.core.chunkenc.histogram import ENC_HISTOGRAM
from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA, STALE_NAN_BITS
from thanostools.core.errors import ConfigError
from thanostools.core.histograms import HistogramBatch, HistogramLayouts, empty_histogram_batch
from thanostools.core.labels import METRIC_NAME, Labels
from thanostools.core.series import KIND_INT_HISTOGRAM, HistogramColumns, SampleBatch

__all__ = ["GenerateSpec", "generate_batches", "generate_series", "render_openmetrics"]

DEFAULT_START_MS = 1_699_999_200_000  # a multiple of 2 h
_BATCH = 2048

# value kinds
_CONST, _COUNTER, _COUNTER_F, _GAUGE, _BUCKET, _HCOUNT, _HSUM, _NATIVE = range(8)

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
_SIGMA = 0.8  # spread of the log-normal latencies
_DAY_MS = 86_400_000
NATIVE_SCHEMA = 3
NATIVE_ZERO_THRESHOLD = 2.0**-128  # client_golang's default
_NATIVE_WIDTH = math.log(2) * 2.0**-NATIVE_SCHEMA  # one bucket, in ln(seconds)
_SWING = 0.25  # latency medians move within median * (1 ± swing)
_NATIVE_SIGMAS = 4  # buckets of a native histogram: ±4 sigma around the swinging median (nothing falls outside)
_NATIVE_BUCKETS = math.ceil((2 * _NATIVE_SIGMAS * _SIGMA + math.log((1 + _SWING) / (1 - _SWING))) / _NATIVE_WIDTH) + 1
_NATIVE_BATCH = 16  # histogram series computed at once: (series, scrapes, buckets) values


@dataclass(frozen=True)
class GenerateSpec:
    series: int = 1000  # approximate number of series (per replica)
    start_ms: int = DEFAULT_START_MS
    duration_ms: int = 2 * 3600 * 1000
    scrape_interval_ms: int = 15000
    seed: int = 0
    replicas: int = 1
    churn: float = 0.1  # fraction of targets whose series start late or end early
    native_histograms: bool = False  # histograms as native (exponential) histograms instead of classic ones
    custom_buckets: bool = False  # with native_histograms: custom buckets (NHCB, schema -53) on the classic bounds

    @property
    def scrapes(self) -> int:
        return max(1, -(-self.duration_ms // self.scrape_interval_ms))

    def validate(self) -> None:
        if self.series < 1:
            raise ConfigError(f"series must be at least 1, got {self.series}")
        if self.duration_ms <= 0 or self.scrape_interval_ms <= 0:
            raise ConfigError("duration and scrape interval must be positive")
        if not 0.0 <= self.churn <= 1.0:
            raise ConfigError(f"churn must be within [0, 1], got {self.churn}")
        if self.replicas < 1:
            raise ConfigError(f"replicas must be at least 1, got {self.replicas}")


# --------------------------------------------------------------------------------------------
# What each job exposes.


@dataclass(frozen=True)
class _Metric:
    name: str
    kind: int
    p1: float  # counters: rate per second; gauges: level; histograms: observations per second
    p2: float = 1.0  # gauges: quantum; histograms: median latency in seconds
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Job:
    name: str
    octet: int
    port: int
    weight: float
    metrics: tuple[_Metric, ...] = field(default=())

    def series_per_target(self, native: bool = False) -> int:
        per_hist = 1 if native else len(_BUCKETS) + 2
        return sum(per_hist if m.kind == _BUCKET else 1 for m in self.metrics)


def _process_metrics(memory: float) -> tuple[_Metric, ...]:
    return (
        _Metric("process_cpu_seconds_total", _COUNTER_F, 0.05),
        _Metric("process_resident_memory_bytes", _GAUGE, memory, 4096.0),
        _Metric("go_goroutines", _GAUGE, 40.0, 1.0),
        _Metric("up", _CONST, 1.0),
    )


def _api_metrics() -> tuple[_Metric, ...]:
    routes = (
        ("/api/v1/users", "GET", 30.0, 0.04),
        ("/api/v1/users", "POST", 3.0, 0.12),
        ("/api/v1/orders", "GET", 12.0, 0.08),
        ("/api/v1/orders", "POST", 2.0, 0.3),
        ("/api/v1/items", "GET", 20.0, 0.03),
        ("/healthz", "GET", 0.2, 0.002),
    )
    out: list[_Metric] = []
    for handler, method, rate, median in routes:
        codes = (("200", 0.95), ("404", 0.04), ("500", 0.01))
        if method == "POST":
            codes = (("201", 0.95), ("400", 0.04), ("500", 0.01))
        for code, share in codes:
            extra = (("code", code), ("handler", handler), ("method", method))
            out.append(_Metric("http_requests_total", _COUNTER, rate * share, extra=extra))
        hist_extra = (("handler", handler), ("method", method))
        out.append(_Metric("http_request_duration_seconds", _BUCKET, rate, median, hist_extra))
    return (*out, *_process_metrics(180e6))


def _db_metrics() -> tuple[_Metric, ...]:
    ops = (("select", 80.0, 0.004), ("insert", 10.0, 0.01), ("update", 6.0, 0.012), ("delete", 1.0, 0.02))
    out: list[_Metric] = []
    for op, rate, median in ops:
        out.append(_Metric("db_queries_total", _COUNTER, rate, extra=(("operation", op),)))
        out.append(_Metric("db_query_duration_seconds", _BUCKET, rate, median, (("operation", op),)))
    out.append(_Metric("db_connections_active", _GAUGE, 25.0, 1.0))
    return (*out, *_process_metrics(900e6))


def _cache_metrics() -> tuple[_Metric, ...]:
    return (
        _Metric("cache_hits_total", _COUNTER, 400.0),
        _Metric("cache_misses_total", _COUNTER, 30.0),
        _Metric("cache_evictions_total", _COUNTER, 2.0),
        _Metric("cache_items", _GAUGE, 250_000.0, 1.0),
        _Metric("cache_memory_bytes", _GAUGE, 2e9, 4096.0),
        *_process_metrics(60e6),
    )


def _node_metrics() -> tuple[_Metric, ...]:
    modes = (("idle", 0.7), ("iowait", 0.02), ("system", 0.08), ("user", 0.2))
    cpu = tuple(
        _Metric("node_cpu_seconds_total", _COUNTER_F, share, extra=(("cpu", str(c)), ("mode", mode)))
        for c in range(4)
        for mode, share in modes
    )
    return (
        *cpu,
        _Metric("node_memory_Active_bytes", _GAUGE, 6e9, 4096.0),
        _Metric("node_memory_MemAvailable_bytes", _GAUGE, 9e9, 4096.0),
        _Metric("node_load1", _GAUGE, 1.5, 0.01),
        _Metric("node_network_receive_bytes_total", _COUNTER, 2e6, extra=(("device", "eth0"),)),
        _Metric("node_network_receive_bytes_total", _COUNTER, 5e4, extra=(("device", "lo"),)),
        _Metric("go_goroutines", _GAUGE, 8.0, 1.0),
        _Metric("process_cpu_seconds_total", _COUNTER_F, 0.01),
        _Metric("up", _CONST, 1.0),
    )


_JOBS = (
    _Job("api", 1, 8080, 0.55, _api_metrics()),
    _Job("db", 2, 9187, 0.2, _db_metrics()),
    _Job("cache", 3, 9121, 0.05, _cache_metrics()),
    _Job("node", 4, 9100, 0.2, _node_metrics()),
)


def _instances_per_job(target: int, native: bool = False) -> list[int]:
    """Instances of each job so that the series total lands as close to `target` as possible."""
    sizes = [job.series_per_target(native) for job in _JOBS]
    counts = [int(job.weight * target / size) for job, size in zip(_JOBS, sizes, strict=True)]
    while True:
        total = sum(c * s for c, s in zip(counts, sizes, strict=True))
        gap, _, best = min(
            (abs(target - total - size), counts[j] * size - _JOBS[j].weight * target, j)
            for j, size in enumerate(sizes)
        )
        if gap >= abs(target - total):
            break
        counts[best] += 1
    if not any(counts):
        counts[sizes.index(min(sizes))] = 1
    return counts


# --------------------------------------------------------------------------------------------
# The catalogue: every series with the recipe for its values, in sorted label order.


@dataclass
class _Catalog:
    labels: list[Labels]
    kind: np.ndarray  # int8
    target: np.ndarray  # int32 index into the target arrays
    key: np.ndarray  # uint64: series identity (entity identity for histogram parts)
    p1: np.ndarray
    p2: np.ndarray
    le: np.ndarray
    target_keys: np.ndarray  # uint64 per target


def _hash(seed: int, *parts: str) -> int:
    return int(xxhash.xxh64_intdigest("\xff".join(parts).encode(), seed=seed & 0xFFFFFFFFFFFFFFFF))


def _format_le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound).removesuffix(".0")


def _build_catalog(spec: GenerateSpec) -> _Catalog:
    rows: list[tuple[Labels, int, int, int, float, float, float]] = []
    target_keys: list[int] = []
    for job, count in zip(_JOBS, _instances_per_job(spec.series, spec.native_histograms), strict=True):
        for i in range(count):
            instance = f"10.{job.octet}.{i // 250}.{i % 250 + 1}:{job.port}"
            tid = len(target_keys)
            target_keys.append(_hash(spec.seed, job.name, instance))
            base = (("instance", instance), ("job", job.name))
            for m in job.metrics:
                rows.extend(_metric_rows(spec.seed, m, base, tid, spec.native_histograms))
    rows.sort(key=lambda r: r[0])
    return _Catalog(
        labels=[r[0] for r in rows],
        kind=np.array([r[1] for r in rows], dtype=np.int8),
        target=np.array([r[2] for r in rows], dtype=np.int32),
        key=np.array([r[3] for r in rows], dtype=np.uint64),
        p1=np.array([r[4] for r in rows], dtype=np.float64),
        p2=np.array([r[5] for r in rows], dtype=np.float64),
        le=np.array([r[6] for r in rows], dtype=np.float64),
        target_keys=np.array(target_keys, dtype=np.uint64),
    )


def _metric_rows(
    seed: int, m: _Metric, base: tuple[tuple[str, str], ...], tid: int, native: bool
) -> Iterator[tuple[Labels, int, int, int, float, float, float]]:
    identity = [m.name, *(f"{k}={v}" for k, v in (*base, *m.extra))]
    key = _hash(seed, *identity)
    # per-series variety: the same metric differs a little between instances
    scale = 0.5 + (key >> 11) / float(1 << 53)
    if m.kind != _BUCKET:
        labels = tuple(sorted(((METRIC_NAME, m.name), *base, *m.extra)))
        p1 = m.p1 if m.kind == _CONST else m.p1 * scale
        yield labels, m.kind, tid, key, p1, m.p2, 0.0
        return
    rate, median = m.p1 * scale, m.p2 * scale
    if native:
        yield tuple(sorted(((METRIC_NAME, m.name), *base, *m.extra))), _NATIVE, tid, key, rate, median, 0.0
        return
    for bound in _BUCKETS:
        le = (("le", _format_le(bound)),)
        labels = tuple(sorted(((METRIC_NAME, m.name + "_bucket"), *base, *m.extra, *le)))
        yield labels, _BUCKET, tid, key, rate, median, bound
    for suffix, kind in (("_count", _HCOUNT), ("_sum", _HSUM)):
        labels = tuple(sorted(((METRIC_NAME, m.name + suffix), *base, *m.extra)))
        yield labels, kind, tid, key, rate, median, 0.0


# --------------------------------------------------------------------------------------------
# Counter-based randomness.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _uniform(keys: np.ndarray, salt: int, n: int) -> np.ndarray:
    """(len(keys), n) uniforms in [0, 1): splitmix64 of key, salt and column index."""
    x = np.arange(n, dtype=np.uint64)
    x += np.uint64(salt * 1_000_003)
    x *= _GOLDEN
    x = keys.astype(np.uint64)[:, None] + x[None, :]
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    x >>= np.uint64(11)
    return x.astype(np.float64) * (1.0 / (1 << 53))


def _uniform1(keys: np.ndarray, salt: int) -> np.ndarray:
    return _uniform(keys, salt, 1)[:, 0]


# --------------------------------------------------------------------------------------------
# Per-target timing: timestamps, churn windows, restarts.


@dataclass
class _Targets:
    t: np.ndarray  # (targets, scrapes) int64
    first: np.ndarray  # first scrape index present
    stop: np.ndarray  # one past the last scrape index present
    restart: np.ndarray  # scrape index at which counters reset (== scrapes: never)


def _targets(spec: GenerateSpec, keys: np.ndarray, replica: int) -> _Targets:
    n, step = spec.scrapes, spec.scrape_interval_ms
    jitter_max = min(5, step // 8)
    phase = (_uniform1(keys, 1) * (step // 2)).astype(np.int64)
    shift = (replica * 997) % (step // 4 + 1)
    replica_keys = keys + np.uint64(replica * 7919)
    jitter = (_uniform(replica_keys, 2, n) * jitter_max).astype(np.int64)
    t = spec.start_ms + shift + phase[:, None] + np.arange(n, dtype=np.int64)[None, :] * step + jitter
    first = np.zeros(keys.size, dtype=np.int64)
    stop = np.full(keys.size, n, dtype=np.int64)
    churned = np.argsort(_uniform1(keys, 3), kind="stable")[: round(spec.churn * keys.size)]
    if n > 2:
        cut = 1 + (_uniform1(keys, 5) * (n // 2)).astype(np.int64)
        late = churned[0::3]  # start late
        early = churned[1::3]  # stop early
        both = churned[2::3]  # come and go
        late, early = np.concatenate((late, both)), np.concatenate((early, both))
        first[late] = cut[late]
        stop[early] = n - cut[early]
        stop = np.maximum(stop, first + 1)
    restart = np.where(_uniform1(keys, 6) < 0.25, 1 + (_uniform1(keys, 7) * (n - 1)).astype(np.int64), n)
    return _Targets(t=t, first=first, stop=stop, restart=restart)


# --------------------------------------------------------------------------------------------
# Values by kind. Each returns a (rows, scrapes) float64 matrix.


def _counter(rows: _Rows, ints: bool) -> np.ndarray:
    step_s = rows.step_ms / 1000.0
    lam = (rows.p1 * step_s)[:, None]
    u = _uniform(rows.key, 11, rows.n)
    inc = lam * (0.6 + 0.8 * u)
    if ints:
        inc = np.floor(inc + _uniform(rows.key, 12, rows.n))
    base = np.floor(rows.p1 * 3600 * 24 * 20 * _uniform1(rows.key, 13))
    out = _accumulate(inc, base, rows.restart)
    return out if ints else np.round(out, 2)


def _accumulate(inc: np.ndarray, base: np.ndarray, restart: np.ndarray) -> np.ndarray:
    """Running totals from `base`, restarting from zero at each row's restart index."""
    cum = np.cumsum(inc, axis=1)
    n = inc.shape[1]
    before = cum[np.arange(cum.shape[0]), np.clip(restart - 1, 0, n - 1)]
    after_restart = np.arange(n)[None, :] >= restart[:, None]
    out: np.ndarray = np.where(after_restart, cum - before[:, None], cum + base[:, None])
    return out


def _gauge(rows: _Rows) -> np.ndarray:
    minutes = (np.arange(rows.n) * (rows.step_ms / 60_000.0))[None, :]
    phase = _uniform1(rows.key, 21)[:, None] * 2 * math.pi
    wave = 0.1 * np.sin(minutes * (2 * math.pi / 90.0) + phase)
    noise = 0.04 * (_uniform(rows.key, 22, rows.n) - 0.5)
    level = rows.p1[:, None] * (1.0 + wave + noise)
    quantum = rows.p2[:, None]
    out: np.ndarray = np.round(level / quantum) * quantum
    return out


def _histogram(rows: _Rows) -> np.ndarray:
    """Buckets, counts and sums; every part of one histogram shares the entity's stream."""
    ents, inverse = np.unique(rows.key, return_inverse=True)
    first = np.zeros(ents.size, dtype=np.int64)
    first[inverse[::-1]] = np.arange(rows.key.size)[::-1]
    step_s = rows.step_ms / 1000.0
    rate, median = rows.p1[first][:, None], rows.p2[first][:, None]
    minutes = (np.arange(rows.n) * (rows.step_ms / 60_000.0))[None, :]
    swing = 1.0 + _SWING * np.sin(minutes * (2 * math.pi / 45.0) + _uniform1(ents, 31)[:, None] * 6.28)
    med = median * swing
    lam = rate * step_s
    obs = np.floor(lam * (0.6 + 0.8 * _uniform(ents, 32, rows.n)) + _uniform(ents, 33, rows.n))
    split = _uniform(ents, 34, rows.n)  # shared by all buckets: keeps them monotone in le
    base_obs = np.floor(rate[:, 0] * 3600 * 24 * 5 * _uniform1(ents, 35))
    base_split = _uniform1(ents, 36)

    out = np.empty((rows.key.size, rows.n), dtype=np.float64)
    for kind in (_BUCKET, _HCOUNT, _HSUM):
        sel = np.flatnonzero(rows.kind == kind)
        if sel.size == 0:
            continue
        e = inverse[sel]
        if kind == _HCOUNT:
            inc, base = obs[e], base_obs[e]
        elif kind == _HSUM:
            mean = np.exp(_SIGMA**2 / 2)
            noise = 0.9 + 0.2 * _uniform(rows.key[sel], 37, rows.n)
            inc = obs[e] * med[e] * mean * noise
            base = base_obs[e] * median[e, 0] * mean
        else:
            inc, base = _bucket_parts(rows.le[sel], med[e], median[e, 0], obs[e], split[e],
                                      base_obs[e], base_split[e])
        out[sel] = _accumulate(inc, base, rows.restart[sel])
    return out


def _bucket_parts(
    le: np.ndarray,
    med: np.ndarray,
    median: np.ndarray,
    obs: np.ndarray,
    split: np.ndarray,
    base_obs: np.ndarray,
    base_split: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(le)
    log_le = np.log(np.where(finite, le, 1.0))[:, None]
    share = _cdf((log_le - np.log(med)) / _SIGMA)
    share[~finite] = 1.0
    base_share = _cdf((log_le[:, 0] - np.log(median)) / _SIGMA)
    base_share[~finite] = 1.0
    inc = np.floor(obs * share + split)
    base = np.floor(base_obs * base_share + base_split)
    return inc, base


def _cdf(z: np.ndarray) -> np.ndarray:
    """Logistic approximation of the normal CDF: smooth, monotone, cheap."""
    result: np.ndarray = 1.0 / (1.0 + np.exp(-1.702 * z))
    return result


def _native_histograms(rows: _Rows, custom: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer native histograms: (bucket counts (rows, scrapes, buckets), sums (rows, scrapes), first bucket
    index per row). Latencies are log-normal around a swinging median, as for the classic histograms. ``custom``:
    buckets on the classic bounds (NHCB, indices from 0, the last one +Inf) instead of exponential ones."""
    e, n = rows.key.size, rows.n
    rate, median = rows.p1[:, None], rows.p2[:, None]
    minutes = (np.arange(n) * (rows.step_ms / 60_000.0))[None, :]
    med = median * (1.0 + _SWING * np.sin(minutes * (2 * math.pi / 45.0) + _uniform1(rows.key, 31)[:, None] * 6.28))
    obs = np.floor(rate * (rows.step_ms / 1000.0) * (0.6 + 0.8 * _uniform(rows.key, 32, n))
                   + _uniform(rows.key, 33, n))
    if custom:
        width = len(_BUCKETS)
        first = np.full(e, -1, np.int64)
        log_upper = np.broadcast_to(np.log(np.array(_BUCKETS[:-1])), (e, width - 1))
        share = _classic_shares((log_upper[:, None, :] - np.log(med)[:, :, None]) / _SIGMA)
        base_share = _classic_shares((log_upper - np.log(median)) / _SIGMA)
    else:
        width = _NATIVE_BUCKETS
        first = np.floor((np.log(median[:, 0] * (1 - _SWING)) - _NATIVE_SIGMAS * _SIGMA) / _NATIVE_WIDTH
                         ).astype(np.int64)
        log_upper = (first[:, None] + np.arange(width + 1)[None, :]) * _NATIVE_WIDTH  # bucket i ends at 2^(i/8)
        share = _window_shares((log_upper[:, None, :] - np.log(med)[:, :, None]) / _SIGMA)
        base_share = _window_shares((log_upper - np.log(median)) / _SIGMA)
    cum = np.floor(obs[:, :, None] * share + _uniform(rows.key, 34, n)[:, :, None])
    base_obs = np.floor(rate[:, 0] * 3600 * 24 * 5 * _uniform1(rows.key, 35))
    base_cum = np.floor(base_obs[:, None] * base_share + _uniform1(rows.key, 36)[:, None])
    inc = np.diff(cum, axis=2, prepend=0.0).transpose(0, 2, 1).reshape(e * width, n)
    base = np.diff(base_cum, axis=1, prepend=0.0).reshape(e * width)
    counts = _accumulate(inc, base, np.repeat(rows.restart, width)).reshape(e, width, n).transpose(0, 2, 1)
    mean = np.exp(_SIGMA**2 / 2)
    sums = _accumulate(obs * med * mean * (0.9 + 0.2 * _uniform(rows.key, 37, n)), base_obs * median[:, 0] * mean,
                       rows.restart)
    return counts.astype(np.int64), sums, first + 1


def _classic_shares(z: np.ndarray) -> np.ndarray:
    """Cumulative shares at the finite classic bounds plus the +Inf bucket's 1 (last axis: the bounds)."""
    cdf = _cdf(z)
    return np.concatenate([cdf, np.ones((*cdf.shape[:-1], 1))], axis=-1)


def _window_shares(z: np.ndarray) -> np.ndarray:
    """Cumulative shares at the upper bounds of a window's buckets, the last axis being the window's edges (its
    lower edge first): the distribution conditioned on falling inside the window, so the last share is 1."""
    cdf = _cdf(z)
    lower, upper = cdf[..., :1], cdf[..., -1:]
    shares: np.ndarray = np.clip((cdf[..., 1:] - lower) / (upper - lower), 0.0, 1.0)
    shares[..., -1] = 1.0
    return shares


@dataclass
class _Rows:
    """One batch of catalogue rows sharing a kind, with their per-target restart index."""

    kind: np.ndarray
    key: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    le: np.ndarray
    restart: np.ndarray
    n: int
    step_ms: int


def _values(rows: _Rows) -> np.ndarray:
    kind = int(rows.kind[0])
    if kind == _CONST:
        return np.broadcast_to(rows.p1[:, None], (rows.key.size, rows.n)).copy()
    if kind in (_COUNTER, _COUNTER_F):
        return _counter(rows, ints=kind == _COUNTER)
    if kind == _GAUGE:
        return _gauge(rows)
    return _histogram(rows)


def _batches(kinds: np.ndarray) -> Iterator[tuple[int, int]]:
    """Runs of rows whose kinds are computed together (all histogram parts count as one)."""
    group = np.where((kinds >= _BUCKET) & (kinds <= _HSUM), _BUCKET, kinds)
    bounds = np.flatnonzero(np.diff(group)) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), kinds.size]
    for s, e in zip(starts, ends, strict=True):
        size = _NATIVE_BATCH if kinds[s] == _NATIVE else _BATCH
        for lo in range(s, e, size):
            yield lo, min(e, lo + size)


# --------------------------------------------------------------------------------------------
# Public API.


def generate_series(spec: GenerateSpec, replica: int = 0) -> Iterator[tuple[Labels, np.ndarray, np.ndarray]]:
    """Yield ``(labels, t, v)`` for every series in sorted label order.

    ``t`` is int64 milliseconds, strictly increasing; ``v`` is uint64 float64 bits. Series of
    targets that stop early end with a StaleNaN sample one scrape interval after their last.
    Native histograms are no floats: such a spec needs :func:`generate_batches`.
    """
    if spec.native_histograms:
        raise ConfigError("native histograms come as sample batches (generate_batches), not float series")
    cat, targets = _prepared(spec, replica)
    for lo, hi in _batches(cat.kind):
        yield from _float_series(spec, cat, targets, lo, hi)


def _prepared(spec: GenerateSpec, replica: int) -> tuple[_Catalog, _Targets]:
    spec.validate()
    if not 0 <= replica < spec.replicas:
        raise ConfigError(f"replica {replica} out of range for {spec.replicas} replicas")
    cat = _build_catalog(spec)
    return cat, _targets(spec, cat.target_keys, replica)


def _rows(spec: GenerateSpec, cat: _Catalog, targets: _Targets, lo: int, hi: int) -> _Rows:
    return _Rows(kind=cat.kind[lo:hi], key=cat.key[lo:hi], p1=cat.p1[lo:hi], p2=cat.p2[lo:hi], le=cat.le[lo:hi],
                 restart=targets.restart[cat.target[lo:hi]], n=spec.scrapes, step_ms=spec.scrape_interval_ms)


def _float_series(spec: GenerateSpec, cat: _Catalog, targets: _Targets, lo: int, hi: int,
                  ) -> Iterator[tuple[Labels, np.ndarray, np.ndarray]]:
    n = spec.scrapes
    stale_t = np.empty(1, dtype=np.int64)
    stale_v = np.array([STALE_NAN_BITS], dtype=np.uint64)
    tgt = cat.target[lo:hi]
    bits = _values(_rows(spec, cat, targets, lo, hi)).view(np.uint64)
    for j in range(hi - lo):
        tid = int(tgt[j])
        first, stop = int(targets.first[tid]), int(targets.stop[tid])
        t, v = targets.t[tid, first:stop], bits[j, first:stop]
        if stop < n:
            stale_t[0] = t[-1] + spec.scrape_interval_ms
            t, v = np.concatenate((t, stale_t)), np.concatenate((v, stale_v))
        yield cat.labels[lo + j], t, v


def generate_batches(spec: GenerateSpec, replica: int = 0, batch_series: int = 5000) -> Iterator[SampleBatch]:
    """The series of :func:`generate_series` as batches of about ``batch_series`` series, native histograms
    included (``spec.native_histograms``; one counts as many series as it has buckets, to bound memory)."""
    cat, targets = _prepared(spec, replica)
    parts: list[SampleBatch] = []
    held = 0
    for lo, hi in _batches(cat.kind):
        if cat.kind[lo] == _NATIVE:
            parts.append(_native_batch(spec, cat, targets, lo, hi))
        else:
            parts.append(SampleBatch.of(list(_float_series(spec, cat, targets, lo, hi))))
        held += (hi - lo) * (_NATIVE_BUCKETS if cat.kind[lo] == _NATIVE else 1)
        if held >= batch_series:
            yield SampleBatch.concat(parts)
            parts, held = [], 0
    if parts:
        yield SampleBatch.concat(parts)


def _native_batch(spec: GenerateSpec, cat: _Catalog, targets: _Targets, lo: int, hi: int) -> SampleBatch:
    """Catalogue rows lo:hi (native histograms) as one batch: one layout (a single span) per series."""
    tgt = cat.target[lo:hi]
    custom = spec.custom_buckets
    counts, sums, first_bucket = _native_histograms(_rows(spec, cat, targets, lo, hi), custom)
    n, width = spec.scrapes, counts.shape[2]
    total = counts.sum(axis=2)
    ts, sum_bits, count, buckets, sizes, bucket_sizes = [], [], [], [], [], []
    stale_bits = np.array([STALE_NAN_BITS], dtype=np.uint64)
    for j, tid in enumerate(tgt.tolist()):
        first, stop = int(targets.first[tid]), int(targets.stop[tid])
        stale = stop < n
        ts.append(targets.t[tid, first:stop])
        sum_bits.append(sums[j, first:stop].view(np.uint64))
        count.append(total[j, first:stop])
        buckets.append(counts[j, first:stop].reshape(-1))
        if stale:  # a stale marker one scrape after the last sample: sum StaleNaN, count 0, no buckets
            ts.append(targets.t[tid, stop - 1 : stop] + spec.scrape_interval_ms)
            sum_bits.append(stale_bits)
            count.append(np.zeros(1, np.int64))
        sizes.append(stop - first + stale)
        bucket_sizes.append(np.append(np.full(stop - first, width, np.int64), np.zeros(int(stale), np.int64)))
    k = hi - lo
    t = np.concatenate(ts)
    zeros = np.zeros(t.shape[0], dtype=np.int64)
    ints = HistogramBatch(
        is_float=False, offsets=np.array([0, t.shape[0]], dtype=np.int64),
        encoding=np.array([ENC_HISTOGRAM], dtype=np.uint8), header=np.zeros(1, np.uint8), t=t, st=zeros,
        hint=np.zeros(t.shape[0], np.uint8), count=np.concatenate(count), zero_count=zeros,
        sum_bits=np.concatenate(sum_bits), layout=np.repeat(np.arange(k, dtype=np.int64), sizes),
        bucket_offsets=np.concatenate([[0], np.cumsum(np.concatenate(bucket_sizes))]).astype(np.int64),
        buckets=np.concatenate(buckets), layouts=HistogramLayouts(
            schema=np.full(k, CUSTOM_BUCKETS_SCHEMA if custom else NATIVE_SCHEMA, np.int32),
            zero_threshold=np.full(k, 0.0 if custom else NATIVE_ZERO_THRESHOLD),
            n_pos=np.full(k, width, np.int64), n_neg=np.zeros(k, np.int64),
            span_bounds=np.concatenate([[0], np.repeat(np.arange(1, k + 1), 2)]).astype(np.int64),
            span_offset=first_bucket.astype(np.int32), span_length=np.full(k, width, np.uint32),
            **_custom_bounds(k, custom)),
    )
    hist = HistogramColumns(np.full(t.shape[0], KIND_INT_HISTOGRAM, np.uint8), np.arange(t.shape[0], dtype=np.int64),
                            ints, empty_histogram_batch(is_float=True))
    return SampleBatch(cat.labels[lo:hi], np.full(k, -1, np.int64),
                       np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), t, ints.sum_bits, hist=hist)


def _custom_bounds(layouts: int, custom: bool) -> dict[str, np.ndarray]:
    """The layout table's custom bounds: the classic finite bounds for every layout, or none."""
    finite = np.array(_BUCKETS[:-1]) if custom else np.zeros(0)
    return {"custom_bounds": np.arange(layouts + 1, dtype=np.int64) * finite.shape[0],
            "custom_values": np.tile(finite, layouts).astype(np.float64)}


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _om_series(labels: Labels) -> str:
    name = ""
    parts: list[str] = []
    for key, value in labels:
        if key == METRIC_NAME:
            name = value
        else:
            parts.append(f'{key}="{_om_escape(value)}"')
    return f"{name}{{{','.join(parts)}}}" if parts else name


def _om_timestamps(t: np.ndarray) -> list[str]:
    """Seconds that promtool turns back into exactly `t` (it truncates seconds*1000)."""
    whole, ms = np.divmod(t, 1000)
    text = [f"{w}.{m:03d}" for w, m in zip(whole.tolist(), ms.tolist(), strict=True)]
    seconds = t.astype(np.float64) / 1000.0
    bad = np.flatnonzero((seconds * 1000.0).astype(np.int64) != t)
    for i in bad.tolist():
        s = seconds[i]
        while int(s * 1000.0) != t[i]:
            s = np.nextafter(s, np.inf if int(s * 1000.0) < t[i] else -np.inf)
        text[i] = repr(float(s))
    return text


_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def render_openmetrics(series_iter: Iterable[tuple[Labels, np.ndarray, np.ndarray]], out: BinaryIO) -> None:
    """Write OpenMetrics text with second timestamps and ``# EOF``; StaleNaN samples are dropped."""
    for labels, t, v in series_iter:
        keep = v != np.uint64(STALE_NAN_BITS)
        t, v = t[keep], v[keep]
        prefix = _om_series(labels) + " "
        values = [_SPECIAL.get(r, r) for r in map(repr, v.view(np.float64).tolist())]
        lines = [f"{prefix}{val} {ts}\n" for val, ts in zip(values, _om_timestamps(t), strict=True)]
        out.write("".join(lines).encode())
    out.write(b"# EOF\n")


def series_count(spec: GenerateSpec) -> int:
    """How many series `generate_series` yields for this spec."""
    sizes = [job.series_per_target(spec.native_histograms) for job in _JOBS]
    return sum(c * s for c, s in zip(_instances_per_job(spec.series, spec.native_histograms), sizes, strict=True))
