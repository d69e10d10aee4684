"""The served blocks as one StoreAPI request sees them: which to read, opened once, failures per block.

A block that cannot be read (missing files, a checksum mismatch …) is left out of the answer with a
warning under partial response, or fails the request under ABORT. Checksum mismatches are also
reported as security events (tampering and bit rot look the same from here).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from thanostools.core import labels as labelset
from thanostools.core.engine import Engine
from thanostools.core.errors import CorruptBlockError, NotFoundError, ThanosToolsError
from thanostools.core.inspect import BlockInfo
from thanostools.core.matchers import Matcher, matches_all
from thanostools.core.querier import split_external
from thanostools.core.tsdb.block import Block, open_bucket_block

log = logging.getLogger("thanostools.server.grpc")
security_log = logging.getLogger("thanostools.security")

BLOCK_ID_LABEL = "__block_id"
# What reading one block may raise without it being our bug (a file gone since the sync is an OSError).
BLOCK_ERRORS = (ThanosToolsError, OSError)


class PartialResponseAbort(ThanosToolsError):
    """A block failed and the request asked for ABORT (gRPC ABORTED)."""


@dataclass
class Failures:
    """Block failures of one request: warnings under WARN, an abort under ABORT."""

    abort: bool
    warnings: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        if self.abort:
            raise PartialResponseAbort(message)
        self.warnings.append(message)


class BlockSet:
    """Opens blocks on first use and keeps them while they are served. Thread-safe."""

    def __init__(self, blocks: Callable[[], list[BlockInfo]], engine: Engine,
                 on_security_event: Callable[[str], None] | None = None) -> None:
        self._list = blocks
        self.engine = engine
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
            try:  # the engine may share its open blocks with other front ends
                block = self.engine.open_block(info.ulid)
            except NotFoundError:
                block = open_bucket_block(self.engine.bucket, info.ulid, meta=info.meta, files=info.files,
                                          cache=self.engine.cache)
            with self._lock:
                block = self._open.setdefault(info.ulid, block)
        return block

    def failed(self, info: BlockInfo, exc: ThanosToolsError | OSError, failures: Failures) -> None:
        """Record that ``info`` could not be read; may raise PartialResponseAbort."""
        self.forget(info.ulid)
        if isinstance(exc, CorruptBlockError):
            exc.located(block=info.ulid)
            if "checksum mismatch" in exc.reason:
                self._security(info.ulid, exc)
        text = str(exc) if isinstance(exc, ThanosToolsError) else f"{exc.strerror or exc}: {exc.filename or ''}"
        failures.add(f"block {info.ulid}: {text}")

    def forget(self, ulid: str) -> None:
        with self._lock:
            self._open.pop(ulid, None)

    def _security(self, ulid: str, exc: CorruptBlockError) -> None:
        message = f"checksum mismatch in block {ulid} file {exc.file or '?'}: {exc.reason}"
        security_log.error(message, extra={"kv": {"security": "checksum_mismatch", "block": ulid,
                                                  "file": exc.file or "", "offset": exc.offset}})
        if self.on_security_event is not None:
            try:
                self.on_security_event(message)
            except Exception:
                log.exception("security event hook failed")


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
