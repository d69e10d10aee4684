"""The served blocks as one StoreAPI request sees them: which to read, opened once, failures per block.

A block that cannot be read (missing files, a checksum mismatch …) is left out of the answer with a
warning under partial response, or fails the request under ABORT: ``core/partial.py`` decides, as for
every other reader, and reports checksum mismatches as security events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from thanostools.core import labels as labelset
from thanostools.core.catalog import BLOCK_ID_LABEL, BlockCatalog
from thanostools.core.errors import NotFoundError, ThanosToolsError
from thanostools.core.inspect import BlockInfo
from thanostools.core.matchers import Matcher, matches_all
from thanostools.core.partial import PartialResponse, SecurityHook
from thanostools.core.querier import split_external
from thanostools.core.tsdb.block import Block, open_bucket_block

# What reading one block may raise without it being our bug (a file gone since the sync is an OSError).
BLOCK_ERRORS = (ThanosToolsError, OSError)


class PartialResponseAbort(ThanosToolsError):
    """A block failed and the request asked for ABORT (gRPC ABORTED)."""


class Failures:
    """Block failures of one request: warnings under WARN, an abort under ABORT."""

    def __init__(self, abort: bool, on_security_event: SecurityHook | None = None) -> None:
        self.policy = PartialResponse(not abort, on_security_event=on_security_event)

    @property
    def warnings(self) -> list[str]:
        return self.policy.warnings


class BlockSet:
    """Opens blocks on first use and keeps them while they are served. Thread-safe."""

    def __init__(self, blocks: Callable[[], list[BlockInfo]], catalog: BlockCatalog,
                 on_security_event: SecurityHook | None = None) -> None:
        self._list = blocks
        self.catalog = catalog
        self.on_security_event = on_security_event
        self._open: dict[str, Block] = {}
        self._lock = threading.Lock()

    def current(self) -> list[BlockInfo]:
        infos = list(self._list())
        ids = {b.ulid for b in infos}
        with self._lock:
            for ulid in [u for u in self._open if u not in ids]:
                del self._open[ulid]
        return infos

    def open(self, info: BlockInfo) -> Block:
        with self._lock:
            block = self._open.get(info.ulid)
        if block is None:
            try:  # the catalog shares its open blocks with the HTTP API's queriers
                block = self.catalog.open_block(info.ulid)
            except NotFoundError:
                block = open_bucket_block(self.catalog.bucket, info.ulid, meta=info.meta, files=info.files,
                                          cache=self.catalog.cache)
            with self._lock:
                block = self._open.setdefault(info.ulid, block)
        return block

    def failures(self, abort: bool) -> Failures:
        """The failure record of one request."""
        return Failures(abort, self.on_security_event)

    def failed(self, info: BlockInfo, exc: ThanosToolsError | OSError, failures: Failures) -> None:
        """Record that ``info`` could not be read; raises PartialResponseAbort under ABORT."""
        self.forget(info.ulid)
        try:
            failures.policy.block_failed(info.ulid, exc)
        except (ThanosToolsError, OSError):
            text = str(exc) if isinstance(exc, ThanosToolsError) else f"{exc.strerror or exc}: {exc.filename or ''}"
            raise PartialResponseAbort(f"block {info.ulid}: {text}") from None

    def forget(self, ulid: str) -> None:
        with self._lock:
            self._open.pop(ulid, None)
        self.catalog.forget_block(ulid)


def overlapping(infos: Sequence[BlockInfo], mint: int, maxt: int) -> list[BlockInfo]:
    """Blocks (half-open [minTime, maxTime)) overlapping the closed range [mint, maxt]."""
    return [b for b in infos if b.meta.max_time > mint and b.meta.min_time <= maxt]


def block_matches(info: BlockInfo, block_matchers: Sequence[Matcher]) -> bool:
    """Request-hint block matchers see the external labels plus ``__block_id``."""
    if not block_matchers:
        return True
    return matches_all(block_matchers, labelset.merge(info.meta.external_labels, ((BLOCK_ID_LABEL, info.ulid),)))


def index_matchers(info: BlockInfo, matchers: Sequence[Matcher]) -> list[Matcher] | None:
    """Matchers left for the block's index, or None when its external labels rule it out (§9.6.3)."""
    ok, rest = split_external(matchers, info.meta.external_labels)
    return rest if ok else None
