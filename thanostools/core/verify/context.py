"""What every check sees: the bucket, one scan of it, the blocks to check and their markers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thanostools.core.blockio import BlockMarkers, fetch_markers
from thanostools.core.inspect import BlockInfo, BucketScan
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.objstore.cache import RangeCache

if TYPE_CHECKING:
    from thanostools.core.tsdb.block import Block
    from thanostools.core.tsdb.index import IndexReader

log = logging.getLogger("thanostools.verify")


@dataclass
class VerifyContext:
    bucket: Bucket
    scan: BucketScan
    blocks: list[BlockInfo]  # the blocks under check (deletion-marked ones excluded unless asked)
    ids: frozenset[str] = frozenset()  # --id: only issues touching these blocks
    cache: RangeCache | None = None
    _markers: dict[str, BlockMarkers] | None = field(default=None, repr=False)

    def wanted(self, ulids: list[str] | tuple[str, ...] | frozenset[str]) -> bool:
        """Whether an issue about ``ulids`` belongs in the report (always, without --id)."""
        return not self.ids or any(u in self.ids for u in ulids)

    def open(self, info: BlockInfo) -> Block:
        from thanostools.core.tsdb.block import open_bucket_block

        return open_bucket_block(self.bucket, info.ulid, meta=info.meta, files=info.files, cache=self.cache)

    def open_index(self, info: BlockInfo) -> IndexReader:
        """Only the index: checks of the index must not depend on the chunk files being intact."""
        from thanostools.core.errors import CorruptBlockError
        from thanostools.core.tsdb.bytesource import BucketSource, ByteSource, MmapSource
        from thanostools.core.tsdb.index import IndexReader

        local = self.bucket.local_path(f"{info.ulid}/index")
        if "index" not in info.files and not (local is not None and os.path.isdir(local)):
            raise CorruptBlockError("index file missing", block=info.ulid, file="index")
        try:
            source: ByteSource = (MmapSource(local, "index") if local is not None
                                  else BucketSource(self.bucket, info.ulid, "index", info.files["index"], self.cache))
        except CorruptBlockError as exc:
            raise exc.located(block=info.ulid) from None
        return IndexReader(source, block=info.ulid)

    def markers(self) -> dict[str, BlockMarkers]:
        """Markers of every block prefix that has marker files (read once)."""
        if self._markers is None:
            with_marks = [b.ulid for b in self.scan.blocks if b.marks]
            prefixes = sorted({*with_marks, *self.scan.partial})
            self._markers = fetch_markers(self.bucket, prefixes) if prefixes else {}
        return self._markers
