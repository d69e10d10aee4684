"""What a running ``serve`` knows: its configuration, the synced block list, and how to build queriers.

The block list comes from one bucket listing plus the ``meta.json`` files, refreshed every
``--sync-interval`` (and on reload): new blocks appear, blocks that were deleted or marked for
deletion disappear, without a restart. Time sharding (``--min-time/--max-time``) and label
sharding (``--selector.relabel-config-file`` over external labels) decide which blocks this
instance serves, so several instances can split one bucket.

Everything here is synchronous core work; the daemon calls it from its thread pool.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from thanostools.core import labels as labelset
from thanostools.core.bucket import BUCKET_ENV, Bucket, open_bucket
from thanostools.core.cache import RangeCache
from thanostools.core.engine import Engine
from thanostools.core.errors import CorruptBlockError, SourceError
from thanostools.core.inspect import BlockInfo, BucketScan, scan_bucket
from thanostools.core.labels import Labels, from_pairs
from thanostools.core.localfs import default_cache_dir
from thanostools.core.matchers import Matcher
from thanostools.core.series import Querier, SampleBatch, SelectHints, SelectResult
from thanostools.core.timeutil import parse_time_ms

if TYPE_CHECKING:
    from thanostools.core.querier import BlockQuerier, SelectStream
    from thanostools.core.sources.remote import RemoteStoreQuerier
    from thanostools.core.tsdb.block import Block

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


# --- the engine over the synced block list ---------------------------------------------------------


BlockSelector = Callable[[BlockInfo], bool]


class ServingEngine(Engine):
    """An :class:`Engine` whose block list is the last sync, filtered by this instance's shard.

    Opened blocks are shared by all requests and dropped when their block leaves the list.
    """

    def __init__(self, bucket: Bucket, *, cache: RangeCache | None, selector: BlockSelector) -> None:
        super().__init__(bucket)
        self.cache = cache
        self.selector = selector
        self._opened: dict[str, Block] = {}
        self._lock = threading.Lock()

    def scan(self, *, refresh: bool = False) -> BucketScan:
        if refresh or self._scan is None:
            return self.resync()
        return self._scan

    def resync(self) -> BucketScan:
        full = scan_bucket(self.bucket)
        kept = [b for b in full.blocks if "deletion" not in b.marks and self.selector(b)]
        view = BucketScan(blocks=kept, partial=full.partial, broken=full.broken)
        ids = {b.ulid for b in kept}
        with self._lock:
            self._scan = view
            for ulid in [u for u in self._opened if u not in ids]:
                del self._opened[ulid]
        return view

    def open_block(self, ulid: str) -> Block:
        with self._lock:
            block = self._opened.get(ulid)
        if block is not None:
            return block
        block = super().open_block(ulid)
        with self._lock:
            return self._opened.setdefault(ulid, block)

    def _read_only(self, *_: Any, **__: Any) -> Any:
        raise SourceError("serve is read-only")

    upload = import_files = generate = _read_only


# --- sharding --------------------------------------------------------------------------------------


RelabelKeep = Callable[[BlockInfo], bool]
BLOCK_ID_LABEL = "__block_id"  # as in Thanos, relabel configs may shard by block ID too


def load_relabel_config(path: str | None) -> RelabelKeep | None:
    """Whether a block is kept by a relabel config (keep/drop/hashmod…) over its external labels, or None."""
    if not path:
        return None
    from thanostools.core.relabel import load_relabel_config_file, relabel

    configs = load_relabel_config_file(path)

    def keep(info: BlockInfo) -> bool:
        # __block_id also makes the input non-empty, so an empty result can only mean "dropped".
        labels = from_pairs([*info.meta.external_labels, (BLOCK_ID_LABEL, info.ulid)])
        return relabel(labels, configs) != ()

    return keep


def shard_selector(config: ServerConfig, relabel_keep: RelabelKeep | None) -> BlockSelector:
    lo, hi = config.time_bounds()

    def accepts(info: BlockInfo) -> bool:
        m = info.meta
        if lo is not None and m.max_time <= lo:
            return False
        if hi is not None and m.min_time > hi:
            return False
        return relabel_keep is None or relabel_keep(info)

    return accepts


# --- queriers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuerierOptions:
    """Per-request choices (Thanos API extras)."""

    dedup: bool = True
    replica_labels: tuple[str, ...] = ()
    partial_response: bool = True
    max_source_resolution_ms: int = 0


SecurityHook = Callable[[str], None]  # called with a one-line description
security_log = logging.getLogger("thanostools.security")


class _WithoutBlocks(Engine):
    """The serving engine minus some blocks (those found damaged during one request)."""

    def __init__(self, base: ServingEngine, exclude: set[str]) -> None:
        super().__init__(base.bucket)
        self.cache = base.cache
        self.base = base
        self.exclude = exclude

    def scan(self, *, refresh: bool = False) -> BucketScan:
        s = self.base.scan()
        if not self.exclude:
            return s
        return BucketScan([b for b in s.blocks if b.ulid not in self.exclude], s.partial, s.broken)

    def open_block(self, ulid: str) -> Block:
        return self.base.open_block(ulid)


class LocalQuerier:
    """A BlockQuerier that, under partial response, drops a block whose data fails its checksums
    and answers from the rest with a warning; every such failure is reported as a security event.

    ``select_batches`` streams as the BlockQuerier does (chunks decoded and CRC-checked one batch at a
    time), so a damaged chunk can surface after batches were delivered: the block is then left out and
    the selection restarts without it, resuming after the last series delivered (see :meth:`_resumed`).
    ``select`` materialises, so it simply starts over without the block.
    """

    def __init__(self, engine: ServingEngine, make: Callable[[Engine], BlockQuerier], *, partial_response: bool,
                 on_security_event: SecurityHook | None) -> None:
        self.excluded: set[str] = set()
        self.partial_response = partial_response
        self.on_security_event = on_security_event
        self.inner = make(_WithoutBlocks(engine, self.excluded))
        self.warnings: list[str] = []

    def _guard(self, call: Callable[[], Any]) -> Any:
        while True:
            try:
                return call()
            except CorruptBlockError as exc:
                if not self._leave_out(exc):
                    raise

    def _leave_out(self, exc: CorruptBlockError) -> bool:
        """Report a damaged block and, under partial response, leave it out of this request (with a warning).

        False when the error must propagate instead (no partial response, no block named, or a block
        that was already left out)."""
        if "checksum mismatch" in exc.reason:
            self._security(exc)
        if not self.partial_response or not exc.block or exc.block in self.excluded:
            return False
        self.excluded.add(exc.block)
        self.warnings.append(f"block {exc.block} left out: {exc}")
        return True

    def _security(self, exc: CorruptBlockError) -> None:
        message = f"checksum mismatch in block {exc.block or '?'} file {exc.file or '?'}: {exc.reason}"
        security_log.error(message, extra={"kv": {"security": "checksum_mismatch", "block": exc.block or "",
                                                  "file": exc.file or "", "offset": exc.offset}})
        if self.on_security_event is not None:
            self.on_security_event(message)

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int,
               hints: SelectHints | None = None) -> SelectResult:
        res: SelectResult = self._guard(lambda: self.inner.select(matchers, mint, maxt, hints))
        return SelectResult(res.batch, [*self.warnings, *res.warnings])

    def select_batches(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None,
                       *, batch_samples: int | None = None) -> SelectStream:
        """``BlockQuerier.select_batches`` (its batch size unless given) with the partial-response guard,
        also while batches are read.

        The stream's ``warnings`` list grows when a block is left out mid-stream: read it again after
        the last batch.
        """
        size = {} if batch_samples is None else {"batch_samples": batch_samples}

        def start() -> SelectStream:
            stream: SelectStream = self._guard(lambda: self.inner.select_batches(matchers, mint, maxt, hints, **size))
            return stream

        first = start()
        warnings: list[str] = []
        _add_new(warnings, [*self.warnings, *first.warnings])
        return dataclasses.replace(first, batches=self._resumed(first, start, warnings), warnings=warnings)

    def _resumed(self, stream: SelectStream, restart: Callable[[], SelectStream], warnings: list[str],
                 ) -> Iterator[SampleBatch]:
        """The stream's batches; a block failing mid-stream is left out and the selection restarted without it.

        Batches are label-ordered and hold whole series, so the restarted selection skips every series up
        to the last label set delivered: the result stays label-ordered with each series once. Series
        delivered before the failure keep the samples they had from the left-out block (whose chunks
        passed their checks up to then); the rest are answered by the other blocks alone.
        """
        last: Labels | None = None
        batches = stream.batches
        while True:
            try:
                batch = next(batches, None)
            except CorruptBlockError as exc:
                if not self._leave_out(exc):
                    raise
                stream = restart()
                batches = stream.batches
                _add_new(warnings, [*self.warnings, *stream.warnings])
                continue
            if batch is None:
                return
            if last is not None:
                batch = _after(batch, last)
            if len(batch):
                last = batch.labels[-1]
                yield batch

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        out: list[str] = self._guard(lambda: self.inner.label_names(matchers, mint, maxt))
        return out

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        out: list[str] = self._guard(lambda: self.inner.label_values(name, matchers, mint, maxt))
        return out


def _add_new(into: list[str], warnings: Sequence[str]) -> None:
    into.extend(w for w in dict.fromkeys(warnings) if w not in into)


def _after(batch: SampleBatch, last: Labels) -> SampleBatch:
    """The series of a label-ordered batch whose label sets sort after ``last``."""
    i = bisect.bisect_right(batch.labels, last)
    if i == 0:
        return batch
    a = int(batch.offsets[i])
    return dataclasses.replace(batch, labels=batch.labels[i:], refs=batch.refs[i:], offsets=batch.offsets[i:] - a,
                               t=batch.t[a:], v=batch.v[a:])


@dataclass
class SyncResult:
    blocks: int
    broken: int
    seconds: float


class ServerState:
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
        self.relabel_keep = load_relabel_config(config.relabel_config_file)
        self.engine = ServingEngine(self.bucket, cache=cache, selector=shard_selector(config, self.relabel_keep))
        self.ready = threading.Event()
        self.started = time.time()
        self.last_sync: float | None = None
        self.last_reload_ok = True
        self.last_reload: float = self.started
        self._sync_lock = threading.Lock()
        self._remote: RemoteStoreQuerier | None = None
        self._remote_lock = threading.Lock()

    # --- syncing ---------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Re-list the bucket and swap in the new block list (one sync at a time)."""
        with self._sync_lock:
            t0 = time.monotonic()
            self.engine.selector = shard_selector(self.config, self.relabel_keep)
            scan = self.engine.resync()
            self.last_sync = time.time()
            self.ready.set()
            return SyncResult(len(scan.blocks), len(scan.broken), time.monotonic() - t0)

    def reload_relabel(self) -> None:
        """Re-read the relabel config (used by the next sync). A bad config keeps the old one and raises."""
        self.relabel_keep = load_relabel_config(self.config.relabel_config_file)

    def blocks(self) -> list[BlockInfo]:
        """The blocks this instance serves right now (empty before the first sync)."""
        return list(self.engine.scan().blocks) if self.ready.is_set() else []

    # --- queriers --------------------------------------------------------------------------------

    def querier(self, opts: QuerierOptions, on_security_event: SecurityHook | None = None) -> Querier:
        """A querier for one request: local blocks, plus the remote endpoints when there are any."""
        from thanostools.core.querier import BlockQuerier

        lo, hi = self.config.time_bounds()
        replica = opts.replica_labels or self.config.replica_labels
        fanout = bool(self.config.endpoints)

        def make(engine: Engine) -> BlockQuerier:
            # With endpoints, replicas are merged once, across all sources, by the fan-out.
            return BlockQuerier(engine, min_time=lo, max_time=hi, replica_labels=() if fanout else replica,
                                dedup=opts.dedup and not fanout,
                                max_source_resolution_ms=opts.max_source_resolution_ms)

        local = LocalQuerier(self.engine, make, partial_response=opts.partial_response,
                             on_security_event=on_security_event)
        if not fanout:
            return local
        from thanostools.core.sources.fanout import FanoutQuerier

        remote = self._remote_querier(opts)
        sources: list[Querier] = [local, remote] if self.config.has_bucket else [remote]
        return FanoutQuerier(sources, replica_labels=replica, dedup=opts.dedup and bool(replica))

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
        for info in self.engine.blocks():
            ok, rest = split_external(matchers, info.meta.external_labels)
            if not ok or info.meta.max_time <= mint or info.meta.min_time > maxt:
                continue
            block = self.engine.open_block(info.ulid)
            for sb in block.index.iter_series(block.postings(rest)):
                live = np.concatenate([[0], np.cumsum((sb.chunk_maxt >= mint) & (sb.chunk_mint <= maxt))])
                counts = live[sb.chunk_offsets[1:]] - live[sb.chunk_offsets[:-1]]
                for i in np.flatnonzero(counts).tolist():
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
