"""Partial response: the one place that decides what a failing block or source does to an answer.

Under partial response (the Thanos default) the block or source is left out and the answer carries a
warning naming it; without, the failure is the answer. ``query``, ``serve`` (HTTP API and StoreAPI) and
the TUI all read blocks through :class:`PartialBlockQuerier` (or, for the StoreAPI, the same
:class:`PartialResponse`), remote endpoints go through :meth:`PartialResponse.source_failed`, so the
same damaged bucket gives the same warnings and errors everywhere.

Warnings: ``block <ULID> skipped: <why>`` for a block whose meta.json cannot be read (it is not in the
listing), ``block <ULID> left out: <why>`` for a listed block that failed while being read. A checksum
mismatch is also a security event (tampering and bit rot look the same from here).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from thanostools.core.catalog import BlockCatalog, ExcludeBlocks
from thanostools.core.errors import BlockGoneError, CorruptBlockError, ThanosToolsError
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.series import (
    DEFAULT_BATCH_SAMPLES,
    LabelResult,
    Querier,
    SampleBatch,
    SelectHints,
    SeriesStream,
    add_new,
)

T = TypeVar("T")
SecurityHook = Callable[[str], None]  # called with a one-line description
log = logging.getLogger("thanostools.partial")
security_log = logging.getLogger("thanostools.security")


def report_checksum_mismatch(ulid: str, exc: CorruptBlockError, hook: SecurityHook | None) -> None:
    """Log a checksum mismatch as a security event and tell the hook (serve counts them)."""
    message = f"checksum mismatch in block {ulid or '?'} file {exc.file or '?'}: {exc.reason}"
    security_log.error(message, extra={"kv": {"security": "checksum_mismatch", "block": ulid,
                                              "file": exc.file or "", "offset": exc.offset}})
    if hook is not None:
        try:
            hook(message)
        except Exception:
            log.exception("security event hook failed")


class PartialResponse:
    """One request's policy: ``enabled`` leaves failing blocks and sources out with a warning, otherwise
    their error ends the request. Collects the blocks left out and the warnings given."""

    def __init__(self, enabled: bool = True, *, on_security_event: SecurityHook | None = None) -> None:
        self.enabled = enabled
        self.on_security_event = on_security_event
        self.left_out: set[str] = set()
        self.warnings: list[str] = []

    def _warn(self, message: str) -> str:
        add_new(self.warnings, [message])
        return message

    def source_failed(self, message: str, error: Exception) -> str:
        """A remote source did not answer: raise ``error``, or the warning ``message``."""
        if not self.enabled:
            raise error
        return self._warn(message)

    def unlisted(self, broken: Mapping[str, ThanosToolsError]) -> list[str]:
        """Blocks whose meta.json cannot be read: one warning each, or the first one's error."""
        out = []
        for ulid, err in sorted(broken.items()):
            if not self.enabled:
                raise err
            out.append(self._warn(f"block {ulid} skipped: {err}"))
        return out

    def block_failed(self, ulid: str, exc: ThanosToolsError | OSError) -> str:
        """A listed block failed while read: raise, or leave it out of the rest of the request and return the
        warning. A checksum mismatch is reported as a security event either way."""
        if isinstance(exc, CorruptBlockError):
            exc.located(block=ulid)
            if "checksum mismatch" in exc.reason:
                report_checksum_mismatch(ulid, exc, self.on_security_event)
        if not self.enabled or ulid in self.left_out:
            raise exc
        self.left_out.add(ulid)
        text = str(exc) if isinstance(exc, ThanosToolsError) else f"{exc.strerror or exc}: {exc.filename or ''}"
        return self._warn(f"block {ulid} left out: {text}")


class PartialBlockQuerier(Querier):
    """A querier over a catalog's blocks under a :class:`PartialResponse` policy.

    ``make`` builds the inner querier over a view of the catalog without the blocks left out. A block
    failing its checks (a ``CorruptBlockError`` naming it), or deleted since the listing (``BlockGoneError``),
    while a selection is planned or streamed is left out and the selection restarted without it, resuming
    after the last series delivered.
    """

    def __init__(self, catalog: BlockCatalog, make: Callable[[BlockCatalog], Querier],
                 policy: PartialResponse) -> None:
        self.catalog = catalog
        self.policy = policy
        self.inner = make(catalog.view(ExcludeBlocks(policy.left_out)))

    def _guard(self, call: Callable[[], T]) -> T:
        while True:
            try:
                return call()
            except (CorruptBlockError, BlockGoneError) as exc:
                self._failed(exc)

    def _failed(self, exc: CorruptBlockError | BlockGoneError) -> None:
        if not exc.block:
            raise exc
        self.catalog.forget_block(exc.block)
        self.policy.block_failed(exc.block, exc)

    def _known_warnings(self, more: Sequence[str]) -> list[str]:
        """The request's warnings so far (blocks left out or skipped), then ``more``, each once."""
        out: list[str] = []
        add_new(out, [*self.policy.warnings, *more])
        return out

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        def start() -> SeriesStream:
            return self._guard(lambda: self.inner.select(matchers, mint, maxt, hints, batch_samples=batch_samples))

        self.policy.unlisted(self.catalog.scan().broken)  # without partial response: fail before reading
        first = start()
        out = SeriesStream((), self._known_warnings(first.warnings), first.series_bound)
        out.batches = self._resumed(first, start, out.warnings)
        return out

    def _resumed(self, stream: SeriesStream, restart: Callable[[], SeriesStream], warnings: list[str],
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
            except (CorruptBlockError, BlockGoneError) as exc:
                self._failed(exc)
                stream = restart()
                batches = stream.batches
                add_new(warnings, [*self.policy.warnings, *stream.warnings])
                continue
            if batch is None:
                add_new(warnings, stream.warnings)
                return
            if last is not None:
                batch = _after(batch, last)
            if len(batch):
                last = batch.labels[-1]
                yield batch

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        self.policy.unlisted(self.catalog.scan().broken)
        res = self._guard(lambda: self.inner.label_names(matchers, mint, maxt))
        return LabelResult(res.values, self._known_warnings(res.warnings))

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        self.policy.unlisted(self.catalog.scan().broken)
        res = self._guard(lambda: self.inner.label_values(name, matchers, mint, maxt))
        return LabelResult(res.values, self._known_warnings(res.warnings))


def _after(batch: SampleBatch, last: Labels) -> SampleBatch:
    """The series of a label-ordered batch whose label sets sort after ``last``."""
    i = bisect.bisect_right(batch.labels, last)
    if i == 0:
        return batch
    a = int(batch.offsets[i])
    return dataclasses.replace(batch, labels=batch.labels[i:], refs=batch.refs[i:], offsets=batch.offsets[i:] - a,
                               t=batch.t[a:], v=batch.v[a:])
