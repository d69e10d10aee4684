"""Thanos block markers: ``deletion-mark.json``, ``no-compact-mark.json``, ``no-downsample-mark.json``.

Markers are compact JSON (Go ``json.Marshal``), stored next to the block's files. Times are Unix seconds.
"""

from __future__ import annotations

import enum
import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from thanostools.core.errors import FormatError
from thanostools.core.tsdb.meta import go_json
from thanostools.core.ulid import is_ulid

MARKER_VERSION = 1

DELETION_MARK = "deletion-mark.json"
NO_COMPACT_MARK = "no-compact-mark.json"
NO_DOWNSAMPLE_MARK = "no-downsample-mark.json"
MARKER_FILENAMES = (DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK)

# Known reasons of no-compact / no-downsample marks.
REASON_MANUAL = "manual"
REASON_INDEX_SIZE_EXCEEDING = "index-size-exceeding"
REASON_OUT_OF_ORDER_CHUNK = "block-index-out-of-order-chunk"
REASON_DOWNSAMPLE_VERTICAL_COMPACTION = "downsample-vertical-compaction"


class MarkerKind(enum.Enum):
    DELETION = DELETION_MARK
    NO_COMPACT = NO_COMPACT_MARK
    NO_DOWNSAMPLE = NO_DOWNSAMPLE_MARK

    @property
    def filename(self) -> str:
        return self.value


class MarkerError(FormatError):
    """A marker file that does not parse or has an unknown version ("marker broken" upstream)."""

    def __init__(self, message: str, *, block: str | None = None, file: str | None = None) -> None:
        self.reason = message
        self.block = block
        self.file = file
        where = "/".join(p for p in (block, file) if p)
        super().__init__(f"broken marker {where}: {message}" if where else f"broken marker: {message}")


def marker_kind_from_filename(name: str) -> MarkerKind | None:
    """The marker kind of a file name or object key (``<ULID>/deletion-mark.json``), None otherwise."""
    base = posixpath.basename(name)
    for kind in MarkerKind:
        if kind.value == base:
            return kind
    return None


def now_seconds() -> int:
    return int(time.time())


@dataclass(frozen=True)
class DeletionMark:
    id: str
    deletion_time: int
    details: str = ""
    version: int = MARKER_VERSION

    kind: ClassVar[MarkerKind] = MarkerKind.DELETION

    @property
    def marked_at(self) -> int:
        return self.deletion_time

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "version": self.version}
        if self.details:
            out["details"] = self.details
        out["deletion_time"] = self.deletion_time
        return out


@dataclass(frozen=True)
class NoCompactMark:
    id: str
    no_compact_time: int
    reason: str = REASON_MANUAL
    details: str = ""
    version: int = MARKER_VERSION

    kind: ClassVar[MarkerKind] = MarkerKind.NO_COMPACT

    @property
    def marked_at(self) -> int:
        return self.no_compact_time

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "version": self.version}
        if self.details:
            out["details"] = self.details
        out["no_compact_time"] = self.no_compact_time
        out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class NoDownsampleMark:
    id: str
    no_downsample_time: int
    reason: str = REASON_MANUAL
    details: str = ""
    version: int = MARKER_VERSION

    kind: ClassVar[MarkerKind] = MarkerKind.NO_DOWNSAMPLE

    @property
    def marked_at(self) -> int:
        return self.no_downsample_time

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "version": self.version}
        if self.details:
            out["details"] = self.details
        out["no_downsample_time"] = self.no_downsample_time
        out["reason"] = self.reason
        return out


Marker = DeletionMark | NoCompactMark | NoDownsampleMark


def encode_marker(marker: Marker) -> bytes:
    """Compact JSON, no trailing newline, keys in upstream order."""
    return go_json(marker.to_dict()).encode()


def marker_key(marker: Marker) -> str:
    """Object key of the marker relative to the bucket root."""
    return f"{marker.id}/{marker.kind.filename}"


def decode_marker(kind: MarkerKind | str, data: bytes | str, *, block: str | None = None) -> Marker:
    """Parse a marker; ``kind`` is a MarkerKind or a file name. Raises MarkerError when broken."""
    if isinstance(kind, str):
        found = marker_kind_from_filename(kind)
        if found is None:
            raise ValueError(f"not a marker file name: {kind!r}")
        kind = found
    return _MarkerParser(kind, block).parse(data)


class _MarkerParser:
    def __init__(self, kind: MarkerKind, block: str | None) -> None:
        self.kind = kind
        self.block = block

    def fail(self, message: str) -> MarkerError:
        return MarkerError(message, block=self.block, file=self.kind.filename)

    def parse(self, data: bytes | str) -> Marker:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.fail(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self.fail("not a JSON object")
        version = self.int_(doc, "version")
        if version != MARKER_VERSION:
            raise self.fail(f"unsupported version {version}")
        marker_id = doc.get("id")
        if not is_ulid(marker_id):
            raise self.fail(f"id is not a valid ULID: {marker_id!r}")
        assert isinstance(marker_id, str)
        details = self.str_(doc, "details")
        if self.kind is MarkerKind.DELETION:
            return DeletionMark(id=marker_id, deletion_time=self.int_(doc, "deletion_time"), details=details)
        if self.kind is MarkerKind.NO_COMPACT:
            return NoCompactMark(id=marker_id, no_compact_time=self.int_(doc, "no_compact_time"),
                                 reason=self.str_(doc, "reason"), details=details)
        return NoDownsampleMark(id=marker_id, no_downsample_time=self.int_(doc, "no_downsample_time"),
                                reason=self.str_(doc, "reason"), details=details)

    def int_(self, doc: dict[str, Any], key: str) -> int:
        value = doc.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} must be an integer, got {value!r}")
        return value

    def str_(self, doc: dict[str, Any], key: str) -> str:
        value = doc.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string, got {value!r}")
        return value
