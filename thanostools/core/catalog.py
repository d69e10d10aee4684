"""The block catalog: a bucket's blocks as one component sees them, and the blocks opened from them.

As a Thanos ``MetaFetcher``: one listing of the bucket with every ``meta.json`` (``inspect.scan_bucket``),
then a chain of filters, each one small object that drops blocks for one reason. Commands compose the
chain they need; the order matters, and the one Thanos's store gateway applies is

    TimePartition → LabelShard → ConsistencyDelay → DropMarked("deletion") → CompactionLeftovers

(sharding first, so that a block of another shard never hides this shard's blocks as leftovers; marked
blocks before leftovers, so that a compacted block marked for deletion does not hide its sources).

``view(*filters)`` is the catalog through more filters: it lists what its base last listed, filtered
again on every look, and shares the base's opened blocks (readers use views; a sync of the base shows
in all of them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from thanostools.core.errors import BlockGoneError, NotFoundError
from thanostools.core.groups import consistency_filter, deduplicate_filter
from thanostools.core.inspect import BlockFilter, BlockInfo, BucketScan, scan_bucket
from thanostools.core.labels import from_pairs
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.objstore.cache import RangeCache

if TYPE_CHECKING:
    from thanostools.core.relabel import RelabelConfig
    from thanostools.core.tsdb.block import Block

BLOCK_ID_LABEL = "__block_id"  # as in Thanos, relabel configs may shard by block ID too


class MetaFilter(Protocol):
    """One reason to leave blocks out of a catalog."""

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        """The blocks kept, in the order given."""
        ...


def _keep_ids(infos: list[BlockInfo], ids: Set[str]) -> list[BlockInfo]:
    return [b for b in infos if b.ulid in ids]


@dataclass(frozen=True)
class TimePartition:
    """Blocks overlapping ``[min_time, max_time]`` (either end open when None): ``serve --min-time/--max-time``."""

    min_time: int | None = None
    max_time: int | None = None

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        lo, hi = self.min_time, self.max_time
        return [b for b in infos if (lo is None or b.meta.max_time > lo) and (hi is None or b.meta.min_time <= hi)]


@dataclass(frozen=True)
class LabelShard:
    """Blocks a relabel config (keep/drop/hashmod …) keeps, given their external labels and ``__block_id``."""

    configs: tuple[RelabelConfig, ...]

    @classmethod
    def from_file(cls, path: str) -> LabelShard:
        from thanostools.core.relabel import load_relabel_config_file

        return cls(tuple(load_relabel_config_file(path)))

    def keeps(self, info: BlockInfo) -> bool:
        from thanostools.core.relabel import relabel

        # __block_id also makes the input non-empty, so an empty result can only mean "dropped".
        labels = from_pairs([*info.meta.external_labels, (BLOCK_ID_LABEL, info.ulid)])
        return relabel(labels, self.configs) != ()

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        return [b for b in infos if self.keeps(b)]


@dataclass(frozen=True)
class ConsistencyDelay:
    """Blocks old enough not to be still uploading (those our own kind of component wrote always pass)."""

    delay_ms: int
    now_ms: int | None = None  # None: the clock at every look

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        kept, _ = consistency_filter((b.meta for b in infos), self.delay_ms, now)
        return _keep_ids(infos, {m.ulid for m in kept})


@dataclass(frozen=True)
class DropMarked:
    """Blocks without the given marker (``deletion``, ``no-compact``, ``no-downsample``)."""

    mark: str

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        return [b for b in infos if self.mark not in b.marks]


@dataclass(frozen=True)
class CompactionLeftovers:
    """Blocks whose sources are not all inside another block of their group (§8.7, Thanos's
    ``DeduplicateFilter``): what a finished compaction left behind is read from its output only."""

    replica_labels: tuple[str, ...] = ()

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        kept, _ = deduplicate_filter((b.meta for b in infos), self.replica_labels)
        return _keep_ids(infos, {m.ulid for m in kept})


@dataclass(frozen=True)
class ExcludeBlocks:
    """Blocks not in ``ids`` (a live set: a request leaves out blocks that failed while it ran)."""

    ids: Set[str]

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        return [b for b in infos if b.ulid not in self.ids] if self.ids else infos


@dataclass(frozen=True)
class Selected:
    """Blocks a command-line block filter (ids, time range, external-label selectors, resolution) accepts."""

    flt: BlockFilter

    def apply(self, infos: list[BlockInfo]) -> list[BlockInfo]:
        return [b for b in infos if self.flt.accepts(b)]


def apply_filters(scan: BucketScan, filters: Sequence[MetaFilter]) -> BucketScan:
    infos = list(scan.blocks)
    for f in filters:
        infos = f.apply(infos)
    return BucketScan(infos, scan.partial, scan.broken)


class BlockCatalog:
    """The filtered block list of one bucket and the blocks opened from it. Thread-safe for reads.

    Opened blocks are shared by every reader of the catalog and its views, and dropped when a sync no
    longer lists them.
    """

    def __init__(self, bucket: Bucket, *, cache: RangeCache | None = None,
                 filters: Sequence[MetaFilter] = ()) -> None:
        self.bucket = bucket
        self.cache = cache
        self.filters: tuple[MetaFilter, ...] = tuple(filters)
        self._base: BlockCatalog | None = None
        self._scan: BucketScan | None = None
        self._opened: dict[str, Block] = {}
        self._lock = threading.Lock()

    def view(self, *filters: MetaFilter) -> BlockCatalog:
        """This catalog through more filters (after its own)."""
        child = BlockCatalog(self.bucket, cache=self.cache, filters=filters)
        child._base = self
        return child

    @property
    def root(self) -> BlockCatalog:
        return self if self._base is None else self._base.root

    # --- listing ---------------------------------------------------------------------------------

    def sync(self) -> BucketScan:
        """List the bucket again (through the root catalog) and return this catalog's blocks."""
        if self._base is not None:
            return apply_filters(self._base.sync(), self.filters)
        view = apply_filters(scan_bucket(self.bucket), self.filters)
        ids = {b.ulid for b in view.blocks}
        with self._lock:
            self._scan = view
            for ulid in [u for u in self._opened if u not in ids]:
                del self._opened[ulid]
        return view

    def scan(self, *, refresh: bool = False) -> BucketScan:
        """The blocks of the last sync (syncing first when there was none, or with ``refresh``)."""
        if refresh:
            return self.sync()
        if self._base is not None:
            return apply_filters(self._base.scan(), self.filters)
        return self._scan if self._scan is not None else self.sync()

    def forget_listing(self) -> None:
        """The bucket changed (we wrote to it): the next look lists it again."""
        self.root._scan = None

    def blocks(self, flt: BlockFilter | None = None) -> list[BlockInfo]:
        infos = self.scan().blocks
        return [b for b in infos if flt is None or flt.accepts(b)]

    def block_info(self, ulid: str) -> BlockInfo:
        return self.scan().by_id(ulid)

    # --- reading ---------------------------------------------------------------------------------

    def open_block(self, ulid: str) -> Block:
        """The block, opened once and shared; BlockGoneError when it is no longer listed or its files are gone
        (deleted since the listing a caller planned with)."""
        try:
            return self.root._opened_block(self.block_info(ulid))
        except BlockGoneError:
            raise
        except NotFoundError as exc:
            raise BlockGoneError(ulid, str(exc)) from None

    def _opened_block(self, info: BlockInfo) -> Block:
        from thanostools.core.tsdb.block import open_bucket_block

        with self._lock:
            block = self._opened.get(info.ulid)
        if block is not None:
            return block
        block = open_bucket_block(self.bucket, info.ulid, meta=info.meta, files=info.files, cache=self.cache)
        with self._lock:
            return self._opened.setdefault(info.ulid, block)

    def forget_block(self, ulid: str) -> None:
        """Close the shared handle of a block (after it failed: the next read opens it afresh)."""
        with self.root._lock:
            self.root._opened.pop(ulid, None)
