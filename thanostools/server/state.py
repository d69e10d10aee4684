"""What a running ``serve`` knows: its configuration, the synced block list, and how to build queriers.

The block list is a :class:`BlockCatalog`: one bucket listing plus the ``meta.json`` files through
serve's filters, refreshed every ``--sync-interval`` (and on reload): new blocks appear, blocks that
were deleted or marked for deletion disappear, without a restart. Time sharding
(``--min-time/--max-time``) and label sharding (``--selector.relabel-config-file`` over external
labels) decide which blocks this instance serves, so several instances can split one bucket.

Everything here is synchronous core work; the daemon calls it from its thread pool.
"""

from __future__ import annotations

import copy
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thanostools.core import labels as labelset
from thanostools.core.catalog import (
    BlockCatalog,
    CompactionLeftovers,
    DropMarked,
    LabelShard,
    MetaFilter,
    TimePartition,
)
from thanostools.core.errors import SourceError
from thanostools.core.inspect import BlockInfo
from thanostools.core.labels import Labels
from thanostools.core.localfs import default_cache_dir
from thanostools.core.matchers import Matcher
from thanostools.core.objstore.bucket import BUCKET_ENV, Bucket, open_bucket
from thanostools.core.objstore.cache import RangeCache
from thanostools.core.partial import SecurityHook
from thanostools.core.promql.features import NO_PROMQL_FEATURES
from thanostools.core.series import Querier
from thanostools.core.timeutil import parse_time_ms

if TYPE_CHECKING:
    from thanostools.core.sources.remote import RemoteStoreQuerier

log = logging.getLogger("thanostools.server")
EMPTY_BUCKET = "memory://thanos-tools-serve-no-bucket"  # a pure querier over --endpoint serves no blocks


@dataclass(frozen=True)
class ServerConfig:
    """Every ``serve`` setting, already validated (times and durations in ms, rates per second)."""

    bucket_url: str | None = None
    objstore_config_file: str | None = None
    objstore_config: str | None = None
    cache_dir: str | None = None
    cache_max_bytes: int = 256 * 2**20
    http_address: str = "127.0.0.1:10902"
    grpc_address: str = "127.0.0.1:10901"
    http_config_file: str | None = None
    bearer_token_file: str | None = None
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    grpc_tls_client_ca: str | None = None
    endpoints: tuple[str, ...] = ()
    endpoint_timeout_s: float = 30.0
    replica_labels: tuple[str, ...] = ()
    partial_response: bool = True
    sync_interval_s: float = 180.0
    min_time: str | None = None  # kept as text: relative times move with the clock, as in Thanos
    max_time: str | None = None
    relabel_config_file: str | None = None
    query_timeout_s: float = 120.0
    max_samples: int = 50_000_000
    max_series: int = 0
    max_concurrent: int = 20
    rate_limit: float = 0.0  # queries per second per client; 0 = off
    rate_burst: int = 0  # 0 = max(1, ceil(rate))
    auth_failure_rate: float = 1.0  # failed logins per second per client address, then 429; 0 = off
    auth_failure_burst: int = 10
    authz_config_file: str | None = None
    query_log_file: str | None = None
    grace_period_s: float = 120.0
    lookback_delta_ms: int = 300_000
    promql_features: frozenset[str] = NO_PROMQL_FEATURES  # --enable-feature names that change PromQL
    flags: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def has_bucket(self) -> bool:
        """Whether local blocks are served: a bucket was given, or there is nothing else to serve."""
        explicit = self.bucket_url or self.objstore_config_file or self.objstore_config
        return bool(explicit or os.environ.get(BUCKET_ENV) or not self.endpoints)

    def time_bounds(self) -> tuple[int | None, int | None]:
        """``--min-time/--max-time`` evaluated now."""
        lo = parse_time_ms(self.min_time) if self.min_time else None
        hi = parse_time_ms(self.max_time) if self.max_time else None
        return lo, hi


# --- the bucket as serve sees it -------------------------------------------------------------------


class ReadOnlyBucket(Bucket):
    """A bucket that counts the bytes it fetches and refuses every write: serve never writes."""

    def __init__(self, base: Bucket, on_fetch: Callable[[int], None] | None = None) -> None:
        super().__init__(base.spec)
        self._on_fetch = on_fetch

    def _count(self, n: int) -> None:
        if self._on_fetch is not None and n:
            self._on_fetch(n)

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self._count(len(data))
        return data

    def get_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        out = super().get_ranges(requests)
        if not self.is_local:
            self._count(sum(len(b) for b in out))
        return out

    def _refuse(self, key: str) -> None:
        raise SourceError(f"refusing to write {key!r}: serve is read-only")

    def put(self, key: str, data: bytes) -> None:
        self._refuse(key)

    def put_file(self, local_path: str, key: str, *, private: bool = False) -> None:
        self._refuse(key)

    def delete(self, key: str) -> None:
        self._refuse(key)


class MemoryRangeCache(RangeCache):
    """The disk range cache with a bounded in-memory LRU in front, for hot postings and series ranges."""

    def __init__(self, cache_dir: str | None, *, memory_bytes: int) -> None:
        super().__init__(cache_dir)
        self.memory_bytes = memory_bytes
        self.memory_hits = 0
        self._lru: OrderedDict[tuple[str, str, str, int, int], bytes] = OrderedDict()
        self._used = 0
        self._mem_lock = threading.Lock()

    def _remember(self, key: tuple[str, str, str, int, int], data: bytes) -> None:
        if len(data) > self.memory_bytes // 8:
            return  # one big range must not flush everything else
        with self._mem_lock:
            if key in self._lru:
                return
            self._lru[key] = data
            self._used += len(data)
            while self._used > self.memory_bytes and self._lru:
                _, old = self._lru.popitem(last=False)
                self._used -= len(old)

    def get(self, block: str, file: str, start: int, end: int, *, namespace: str = "") -> bytes | None:
        key = (namespace, block, file, start, end)
        with self._mem_lock:
            data = self._lru.get(key)
            if data is not None:
                self._lru.move_to_end(key)
                self.memory_hits += 1
                return data
        data = super().get(block, file, start, end, namespace=namespace)
        if data is not None:
            self._remember(key, data)
        return data

    def put(self, block: str, file: str, start: int, end: int, data: bytes, *, namespace: str = "") -> None:
        super().put(block, file, start, end, data, namespace=namespace)
        self._remember((namespace, block, file, start, end), data)


# --- queriers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuerierOptions:
    """Per-request choices (Thanos API extras)."""

    dedup: bool = True
    replica_labels: tuple[str, ...] = ()
    partial_response: bool = True
    max_source_resolution_ms: int = 0


@dataclass
class SyncResult:
    blocks: int
    broken: int
    seconds: float


class ServerState:
    """The catalog of served blocks (synced every ``--sync-interval``) and the queriers over it.

    ``catalog`` lists the blocks of this instance's shard (time partition, relabel sharding) that are not
    marked for deletion; ``served`` is what queries read (HTTP and StoreAPI): that, without compaction
    leftovers.
    """

    def __init__(self, config: ServerConfig, *, on_fetch: Callable[[int], None] | None = None) -> None:
        self.config = config
        if config.has_bucket:
            base = open_bucket(config.bucket_url, objstore_config_file=config.objstore_config_file,
                               objstore_config=config.objstore_config)
        else:
            base = open_bucket(EMPTY_BUCKET)
        self.bucket = ReadOnlyBucket(base, on_fetch)
        cache = None if self.bucket.is_local else MemoryRangeCache(
            config.cache_dir or default_cache_dir(), memory_bytes=config.cache_max_bytes)
        self.relabel_shard = _load_shard(config.relabel_config_file)
        self.catalog = BlockCatalog(self.bucket, cache=cache, filters=self._filters())
        self.served = self.catalog.view(CompactionLeftovers())
        self.ready = threading.Event()
        self.started = time.time()
        self.last_sync: float | None = None
        self.last_reload_ok = True
        self.last_reload: float = self.started
        self._sync_lock = threading.Lock()
        self._remote: RemoteStoreQuerier | None = None
        self._remote_lock = threading.Lock()

    def _filters(self) -> list[MetaFilter]:
        """Thanos's store-gateway order: time partition, label shard, deletion marks (leftovers: ``served``)."""
        lo, hi = self.config.time_bounds()
        shard: list[MetaFilter] = [self.relabel_shard] if self.relabel_shard is not None else []
        return [TimePartition(lo, hi), *shard, DropMarked("deletion")]

    # --- syncing ---------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Re-list the bucket and swap in the new block list (one sync at a time)."""
        with self._sync_lock:
            t0 = time.monotonic()
            self.catalog.filters = tuple(self._filters())  # relative --min-time/--max-time move with the clock
            scan = self.catalog.sync()
            _settle_heap()
            self.last_sync = time.time()
            self.ready.set()
            return SyncResult(len(scan.blocks), len(scan.broken), time.monotonic() - t0)

    def reload_relabel(self) -> None:
        """Re-read the relabel config (used by the next sync). A bad config keeps the old one and raises."""
        self.relabel_shard = _load_shard(self.config.relabel_config_file)

    def blocks(self) -> list[BlockInfo]:
        """The blocks this instance serves right now (empty before the first sync)."""
        return list(self.catalog.scan().blocks) if self.ready.is_set() else []

    def served_blocks(self) -> list[BlockInfo]:
        """The blocks queries read right now (empty before the first sync)."""
        return list(self.served.scan().blocks) if self.ready.is_set() else []

    # --- queriers --------------------------------------------------------------------------------

    def querier(self, opts: QuerierOptions, on_security_event: SecurityHook | None = None) -> Querier:
        """A querier for one request: local blocks, plus the remote endpoints when there are any; replicas are
        merged once, across all sources."""
        from thanostools.core.dedup import deduplicated
        from thanostools.core.partial import PartialResponse
        from thanostools.core.querier import bucket_querier

        lo, hi = self.config.time_bounds()
        replica = opts.replica_labels or self.config.replica_labels
        policy = PartialResponse(opts.partial_response, on_security_event=on_security_event)
        local = bucket_querier(self.served, policy, min_time=lo, max_time=hi,
                               max_source_resolution_ms=opts.max_source_resolution_ms)
        if not self.config.endpoints:
            return deduplicated(local, replica, opts.dedup)
        from thanostools.core.sources.fanout import FanoutQuerier

        remote = self._remote_querier(opts)
        sources: list[Querier] = [local, remote] if self.config.has_bucket else [remote]
        return deduplicated(FanoutQuerier(sources), replica, opts.dedup)

    def series_labels(self, matchers: Sequence[Matcher], mint: int, maxt: int, opts: QuerierOptions,
                      ) -> list[Labels]:
        """Label sets of the local series with chunks in ``[mint, maxt]``, from the indexes alone.

        The series API needs no samples (Prometheus reads no chunks for it either), so a broad
        ``match[]`` over all time costs index reads, not a decode of everything.
        """
        from thanostools.core.querier import split_external

        lo, hi = self.config.time_bounds()
        mint, maxt = max(mint, lo) if lo is not None else mint, min(maxt, hi) if hi is not None else maxt
        replica = (opts.replica_labels or self.config.replica_labels) if opts.dedup else ()
        found: set[Labels] = set()
        for info in self.served.blocks():
            ok, rest = split_external(matchers, info.meta.external_labels)
            if not ok or info.meta.max_time <= mint or info.meta.min_time > maxt:
                continue
            block = self.served.open_block(info.ulid)
            for sb in block.index.iter_series(block.postings(rest)):
                rows, _ = sb.rows_in_range(mint, maxt)
                for i in rows.tolist():
                    found.add(labelset.without(labelset.merge(sb.labels[i], info.meta.external_labels), replica))
        return sorted(found)

    def _remote_querier(self, opts: QuerierOptions) -> Querier:
        """The endpoints' querier with this request's options; channels and Info caches are shared."""
        from thanostools.core.sources.remote import RemoteStoreQuerier

        with self._remote_lock:
            if self._remote is None:
                self._remote = RemoteStoreQuerier(list(self.config.endpoints), timeout_s=self.config.endpoint_timeout_s)
        view = copy.copy(self._remote)
        view.partial_response = opts.partial_response
        view.max_source_resolution_ms = opts.max_source_resolution_ms
        return view

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()


def _settle_heap() -> None:
    """Set what is alive after a sync (modules, the catalog, opened blocks' tables) apart from the garbage
    collector's full passes, which a large query's allocations otherwise trigger about once each, re-scanning
    all of it (a third of a 35 k-series selector's time). Unfrozen and collected first: what the sync dropped
    is freed (frozen objects never are), so at most one sync interval's worth is held back."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _load_shard(path: str | None) -> LabelShard | None:
    return LabelShard.from_file(path) if path else None
