"""BucketWorkspace: what the bucket commands do with one bucket. It returns data, never text.

Listing and opening blocks go through its :class:`BlockCatalog` (unfiltered: commands filter what
they list with a ``BlockFilter``; queriers read through a view of it with the filters they need).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from thanostools.core import blockio
from thanostools.core.catalog import BlockCatalog
from thanostools.core.errors import NotFoundError
from thanostools.core.inspect import BlockFilter, BlockInfo, BucketScan
from thanostools.core.matchers import Matcher
from thanostools.core.objstore.bucket import Bucket, open_bucket
from thanostools.core.objstore.cache import RangeCache
from thanostools.core.tsdb.meta import BlockMeta

# Heavy modules (numpy, numba kernels) load on first use so listing commands start fast.
if TYPE_CHECKING:
    from thanostools.core.analyze import AnalyzeReport
    from thanostools.core.chunkenc.aggr import Aggr
    from thanostools.core.ingest.generate import GenerateSpec
    from thanostools.core.series import SampleBatch
    from thanostools.core.tsdb.block import Block

MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1


class BucketWorkspace:
    """Operations on one bucket. Thread-safe for reads."""

    def __init__(self, bucket: Bucket, *, cache_dir: str | None = None) -> None:
        self.bucket = bucket
        self.cache = RangeCache(cache_dir) if cache_dir else None
        self.catalog = BlockCatalog(bucket, cache=self.cache)

    @classmethod
    def open(cls, url: str | None = None, *, objstore_config_file: str | None = None,
             objstore_config: str | None = None, cache_dir: str | None = None) -> BucketWorkspace:
        bucket = open_bucket(url, objstore_config_file=objstore_config_file, objstore_config=objstore_config)
        return cls(bucket, cache_dir=cache_dir)

    # --- listing ---------------------------------------------------------------------------------

    def scan(self, *, refresh: bool = False) -> BucketScan:
        return self.catalog.scan(refresh=refresh)

    def blocks(self, flt: BlockFilter | None = None) -> list[BlockInfo]:
        return self.catalog.blocks(flt)

    def block_info(self, ulid: str) -> BlockInfo:
        return self.catalog.block_info(ulid)

    def newest_block(self, flt: BlockFilter | None = None) -> BlockInfo:
        """The block with the greatest minTime (promtool's default for analyze)."""
        infos = self.blocks(flt)
        if not infos:
            raise NotFoundError(f"no blocks in bucket {self.bucket.url}")
        return infos[-1]

    def markers(self, ulid: str) -> blockio.BlockMarkers:
        return blockio.block_markers(self.bucket, ulid)

    # --- reading ---------------------------------------------------------------------------------

    def open_block(self, ulid: str) -> Block:
        return self.catalog.open_block(ulid)

    def analyze(self, ulid: str | None = None, *, matchers: Sequence[Matcher] = (),
                extended: bool = False, limit: int = 20) -> AnalyzeReport:
        from thanostools.core.analyze import analyze_block

        target = ulid or self.newest_block().ulid
        return analyze_block(self.open_block(target), matchers=matchers, extended=extended, limit=limit)

    def select(self, ids: Sequence[str] = (), matchers: Sequence[Matcher] = (), mint: int = MIN_TIME,
               maxt: int = MAX_TIME, *, aggregate: Aggr | None = None,
               resolution: int | None = None, batch_size: int = 20000,
               histograms: bool = False) -> Iterator[SampleBatch]:
        """Samples merged across the chosen blocks (all blocks by default), in label order; native histograms
        in the batches' histogram part with ``histograms``, else refused."""
        from thanostools.core.chunkenc.aggr import Aggr
        from thanostools.core.storage import select_blocks

        infos = [self.block_info(u) for u in ids] if ids else [
            b for b in self.blocks() if resolution is None or b.meta.resolution == resolution]
        blocks = [self.open_block(b.ulid) for b in infos]
        return select_blocks(blocks, matchers, mint, maxt, aggregate=aggregate or Aggr.COUNT, batch_size=batch_size,
                             histograms=histograms)

    # --- writing ---------------------------------------------------------------------------------

    def upload(self, local_block_dir: str, *, hash_files: bool = False) -> BlockMeta:
        meta = blockio.upload_block(local_block_dir, self.bucket, hash_files=hash_files)
        self.catalog.forget_listing()
        return meta

    def download(self, ulid: str, local_dir: str, *, overwrite: bool = False) -> str:
        return blockio.download_block(self.bucket, ulid, local_dir, overwrite=overwrite)

    def import_files(self, paths: Sequence[str], *, fmt: str = "auto",
                     external_labels: Mapping[str, str] | None = None, block_duration: int | None = None,
                     tmp_dir: str | None = None) -> list[BlockMeta]:
        from thanostools.core.ingest.blockset import DEFAULT_BLOCK_DURATION
        from thanostools.core.ingest.importer import import_files

        metas = import_files(self.bucket, paths, fmt=fmt, external_labels=external_labels,
                             block_duration=block_duration or DEFAULT_BLOCK_DURATION, tmp_dir=tmp_dir)
        self.catalog.forget_listing()
        return metas

    def generate(self, spec: GenerateSpec, *, external_labels: Mapping[str, str] | None = None,
                 replica_label: str = "replica", block_duration: int | None = None,
                 tmp_dir: str | None = None) -> list[BlockMeta]:
        from thanostools.core.ingest.blockset import DEFAULT_BLOCK_DURATION
        from thanostools.core.ingest.importer import generate_blocks

        metas = generate_blocks(self.bucket, spec, external_labels=external_labels, replica_label=replica_label,
                                block_duration=block_duration or DEFAULT_BLOCK_DURATION, tmp_dir=tmp_dir)
        self.catalog.forget_listing()
        return metas
