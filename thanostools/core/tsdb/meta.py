"""``meta.json``: the Prometheus block metadata and the Thanos extension under the ``thanos`` key.

A parsed ``BlockMeta`` remembers the JSON object it came from. ``to_json`` lays the typed fields over
that object, so keys this module does not know survive a read-modify-write, in their original place.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn

from thanostools.core import labels as labelset
from thanostools.core.constants import RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.errors import CorruptBlockError, NotFoundError, SourceError
from thanostools.core.localfs import atomic_write
from thanostools.core.ulid import is_ulid

META_FILENAME = "meta.json"
META_VERSION = 1
THANOS_VERSION = 1

VALID_RESOLUTIONS = frozenset({RESOLUTION_RAW, RESOLUTION_5M, RESOLUTION_1H})

ZERO_TIME = "0001-01-01T00:00:00Z"
# Real metas nest about five levels (opaque extensions a few more); deeper documents are refused before
# anything recurses over them.
MAX_META_DEPTH = 100
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)
HASH_SHA256 = "SHA256"

# Known values of thanos.source.
SOURCE_SIDECAR = "sidecar"
SOURCE_RECEIVE = "receive"
SOURCE_COMPACTOR = "compactor"
SOURCE_COMPACTOR_REPAIR = "compactor.repair"
SOURCE_RULER = "ruler"
SOURCE_BUCKET_REPAIR = "bucket.repair"
SOURCE_BUCKET_REWRITE = "bucket.rewrite"
SOURCE_BUCKET_UPLOAD = "bucket.upload"
SOURCE_TEST = "test"

MetaStyle = Literal["thanos", "prometheus"]


@dataclass
class BlockStats:
    num_samples: int = 0
    num_series: int = 0
    num_chunks: int = 0
    num_tombstones: int = 0
    num_float_samples: int = 0
    num_histogram_samples: int = 0


@dataclass
class BlockDesc:
    """One entry of ``compaction.parents``."""

    ulid: str
    min_time: int
    max_time: int


@dataclass
class FileHash:
    func: str = HASH_SHA256
    value: str = ""


@dataclass
class BlockFile:
    """One entry of ``thanos.files``."""

    rel_path: str
    size_bytes: int = 0
    hash: FileHash | None = None


@dataclass
class IndexStats:
    series_max_size: int = 0
    chunk_max_size: int = 0


@dataclass
class ThanosMeta:
    labels: dict[str, str] = field(default_factory=dict)
    resolution: int = RESOLUTION_RAW
    source: str = ""
    segment_files: list[str] = field(default_factory=list)
    files: list[BlockFile] = field(default_factory=list)
    index_stats: IndexStats = field(default_factory=IndexStats)
    upload_time: str = ZERO_TIME
    # Opaque JSON, written back as read (see FORMATS.md §11.7 for the shape).
    rewrites: list[dict[str, Any]] = field(default_factory=list)
    extensions: Any = None
    version: int = THANOS_VERSION

    @property
    def external_labels(self) -> labelset.Labels:
        return labelset.from_dict(self.labels)

    @property
    def upload_time_ms(self) -> int | None:
        """Upload time in Unix ms, None when unset (the Go zero time)."""
        ns = parse_go_time(self.upload_time)
        return None if ns is None else ns // 1_000_000

    def set_upload_time_now(self) -> None:
        self.upload_time = format_go_time_ns(time.time_ns())


@dataclass
class BlockMeta:
    ulid: str
    min_time: int
    max_time: int
    stats: BlockStats = field(default_factory=BlockStats)
    level: int = 1
    sources: list[str] = field(default_factory=list)
    parents: list[BlockDesc] = field(default_factory=list)
    deletable: bool = False
    failed: bool = False
    hints: list[str] = field(default_factory=list)
    version: int = META_VERSION
    thanos: ThanosMeta | None = None
    # The JSON object this meta was parsed from; unknown keys are written back from it.
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def external_labels(self) -> labelset.Labels:
        return self.thanos.external_labels if self.thanos is not None else labelset.EMPTY

    @property
    def resolution(self) -> int:
        return self.thanos.resolution if self.thanos is not None else RESOLUTION_RAW

    def copy(self) -> BlockMeta:
        return copy.deepcopy(self)

    @classmethod
    def from_json(cls, data: bytes | str, *, block: str | None = None) -> BlockMeta:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptBlockError(f"not valid JSON: {exc}", block=block, file=META_FILENAME) from None
        except RecursionError:
            raise CorruptBlockError(f"JSON nested deeper than {MAX_META_DEPTH} levels", block=block,
                                    file=META_FILENAME) from None
        return cls.from_dict(doc, block=block)

    @classmethod
    def from_dict(cls, doc: object, *, block: str | None = None) -> BlockMeta:
        """Parse and validate. ``block`` is the block's directory name: a ULID there is the block's identity,
        and a meta.json naming another ULID makes the block corrupt."""
        return _Parser(block).meta(doc)

    def to_dict(self, *, include_thanos: bool = True) -> dict[str, Any]:
        canonical = _encode_meta(self, include_thanos=include_thanos)
        if self.raw is None:
            return canonical
        return _overlay(self.raw, canonical, _META_SHAPE)

    def to_json(self, style: MetaStyle = "thanos") -> bytes:
        """Tab-indented JSON as upstream writes it; Thanos style ends with a newline, Prometheus style not."""
        text = go_json(self.to_dict(), indent="\t")
        if style == "thanos":
            text += "\n"
        elif style != "prometheus":
            raise ValueError(f"unknown meta.json style {style!r}")
        return text.encode()


# --- time helpers -------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GO_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def format_go_time_ns(ns: int) -> str:
    """RFC3339Nano in UTC as Go prints it: fraction without trailing zeros, omitted when zero."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def parse_go_time(text: str) -> int | None:
    """Unix nanoseconds of an RFC3339(Nano) string; None for the Go zero time. ValueError if malformed."""
    m = _GO_TIME.match(text)
    if m is None:
        raise ValueError(f"not an RFC3339 time: {text!r}")
    base, frac, zone = m.groups()
    nanos = int((frac or "0").ljust(9, "0"))
    if base == "0001-01-01T00:00:00" and zone == "Z" and nanos == 0:
        return None
    try:
        when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        raise ValueError(f"not an RFC3339 time: {text!r}") from None
    whole = (when - _EPOCH) // timedelta(seconds=1)
    return whole * 1_000_000_000 + nanos


# --- JSON output ---------------------------------------------------------------------------------

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(value: Any, *, indent: str | None = None) -> str:
    """JSON the way Go's encoding/json writes it (HTML characters escaped, compact or indented)."""
    if indent is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=indent)
    # These characters can only occur inside strings, so replacing them everywhere is safe.
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], text)


def _omit_zero(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in pairs if v}


def _encode_meta(meta: BlockMeta, *, include_thanos: bool) -> dict[str, Any]:
    s = meta.stats
    stats = _omit_zero([
        ("numSamples", s.num_samples),
        ("numFloatSamples", s.num_float_samples),
        ("numHistogramSamples", s.num_histogram_samples),
        ("numSeries", s.num_series),
        ("numChunks", s.num_chunks),
        ("numTombstones", s.num_tombstones),
    ])
    compaction: dict[str, Any] = {"level": meta.level}
    compaction.update(_omit_zero([
        ("sources", list(meta.sources)),
        ("deletable", meta.deletable),
        ("parents", [{"ulid": p.ulid, "minTime": p.min_time, "maxTime": p.max_time} for p in meta.parents]),
        ("failed", meta.failed),
        ("hints", list(meta.hints)),
    ]))
    out: dict[str, Any] = {
        "ulid": meta.ulid,
        "minTime": meta.min_time,
        "maxTime": meta.max_time,
        "stats": stats,
        "compaction": compaction,
        "version": meta.version,
    }
    if include_thanos and meta.thanos is not None:
        out["thanos"] = _encode_thanos(meta.thanos)
    return out


def _encode_file(f: BlockFile) -> dict[str, Any]:
    out: dict[str, Any] = {"rel_path": f.rel_path}
    if f.size_bytes:
        out["size_bytes"] = f.size_bytes
    if f.hash is not None:
        out["hash"] = {"hashFunc": f.hash.func, "value": f.hash.value}
    return out


def _encode_thanos(t: ThanosMeta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if t.version:
        out["version"] = t.version
    out["labels"] = dict(sorted(t.labels.items())) if t.labels else None
    out["downsample"] = {"resolution": t.resolution}
    out["source"] = t.source
    if t.segment_files:
        out["segment_files"] = list(t.segment_files)
    if t.files:
        out["files"] = [_encode_file(f) for f in t.files]
    if t.rewrites:
        out["rewrites"] = copy.deepcopy(t.rewrites)
    out["index_stats"] = _omit_zero([
        ("series_max_size", t.index_stats.series_max_size),
        ("chunk_max_size", t.index_stats.chunk_max_size),
    ])
    if t.extensions is not None:
        out["extensions"] = copy.deepcopy(t.extensions)
    out["upload_time"] = t.upload_time or ZERO_TIME
    return out


# --- overlaying typed fields on the original object ---------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """Keys this module owns at one level of the document, and the nested objects it merges into."""

    known: frozenset[str]
    children: Mapping[str, _Shape] = field(default_factory=dict)


_META_SHAPE = _Shape(
    frozenset({"ulid", "minTime", "maxTime", "stats", "compaction", "version", "thanos"}),
    {
        "stats": _Shape(frozenset({
            "numSamples", "numFloatSamples", "numHistogramSamples", "numSeries", "numChunks", "numTombstones",
        })),
        "compaction": _Shape(frozenset({"level", "sources", "deletable", "parents", "failed", "hints"})),
        "thanos": _Shape(
            frozenset({
                "version", "labels", "downsample", "source", "segment_files", "files", "rewrites",
                "index_stats", "extensions", "upload_time",
            }),
            {
                "downsample": _Shape(frozenset({"resolution"})),
                "index_stats": _Shape(frozenset({"series_max_size", "chunk_max_size"})),
            },
        ),
    },
)


def _overlay(raw: Mapping[str, Any], canonical: dict[str, Any], shape: _Shape) -> dict[str, Any]:
    items: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if key not in shape.known:
            items.append((key, copy.deepcopy(value)))
        elif key in canonical:
            new = canonical[key]
            child = shape.children.get(key)
            if child is not None and isinstance(value, dict) and isinstance(new, dict):
                new = _overlay(value, new, child)
            items.append((key, new))
    order = list(canonical)
    for i, key in enumerate(order):
        present = [k for k, _ in items]
        if key in present:
            continue
        before = [present.index(k) + 1 for k in order[:i] if k in present]
        after = [present.index(k) for k in order[i + 1:] if k in present]
        pos = max(before) if before else (min(after) if after else len(items))
        items.insert(pos, (key, canonical[key]))
    return dict(items)


# --- parsing --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, block: str | None) -> None:
        self.block = block

    def fail(self, message: str) -> NoReturn:
        raise CorruptBlockError(message, block=self.block, file=META_FILENAME)

    def obj(self, value: object, where: str, *, nullable: bool = True) -> dict[str, Any]:
        if value is None and nullable:
            return {}
        if not isinstance(value, dict):
            self.fail(f"{where} must be a JSON object, got {_kind(value)}")
        return value

    def int_(self, d: Mapping[str, Any], key: str, where: str, *, required: bool = False,
             unsigned: bool = False) -> int:
        value = d.get(key)
        if value is None:
            if required:
                self.fail(f"{where}{key} is missing")
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where}{key} must be an integer, got {_kind(value)}")
        if unsigned and value < 0:
            self.fail(f"{where}{key} must not be negative, got {value}")
        low, high = _UINT64 if unsigned else _INT64
        if not low <= value <= high:
            self.fail(f"{where}{key} is out of range: {value}")
        return value

    def bool_(self, d: Mapping[str, Any], key: str, where: str) -> bool:
        value = d.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(f"{where}{key} must be true or false, got {_kind(value)}")
        return value

    def str_(self, d: Mapping[str, Any], key: str, where: str) -> str:
        value = d.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(f"{where}{key} must be a string, got {_kind(value)}")
        return value

    def list_(self, d: Mapping[str, Any], key: str, where: str) -> list[Any]:
        value = d.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{where}{key} must be a JSON array, got {_kind(value)}")
        return value

    def ulid(self, value: object, where: str) -> str:
        if not is_ulid(value):
            self.fail(f"{where} is not a valid ULID: {value!r}")
        assert isinstance(value, str)
        return value

    def str_list(self, d: Mapping[str, Any], key: str, where: str) -> list[str]:
        items = self.list_(d, key, where)
        for item in items:
            if not isinstance(item, str):
                self.fail(f"{where}{key} must hold strings, got {_kind(item)}")
        return list(items)

    def meta(self, doc: object) -> BlockMeta:
        top = self.obj(doc, "meta.json", nullable=False)
        if _depth(top) > MAX_META_DEPTH:
            self.fail(f"JSON nested deeper than {MAX_META_DEPTH} levels")
        version = self.int_(top, "version", "", required=True)
        if version != META_VERSION:
            self.fail(f"unsupported meta.json version {version} (only {META_VERSION} is known)")
        if "ulid" not in top:
            self.fail("ulid is missing")
        meta = BlockMeta(
            ulid=self.ulid(top["ulid"], "ulid"),
            min_time=self.int_(top, "minTime", "", required=True),
            max_time=self.int_(top, "maxTime", "", required=True),
            stats=self.stats(self.obj(top.get("stats"), "stats")),
            version=version,
            thanos=None if top.get("thanos") is None else self.thanos(top["thanos"]),
            raw=top,
        )
        self.compaction(self.obj(top.get("compaction"), "compaction"), meta)
        if is_ulid(self.block) and meta.ulid != self.block:
            self.fail(f"ulid {meta.ulid} does not match the block directory {self.block}")
        if meta.max_time < meta.min_time:
            self.fail(f"maxTime {meta.max_time} is before minTime {meta.min_time}")
        return meta

    def stats(self, d: Mapping[str, Any]) -> BlockStats:
        def n(key: str) -> int:
            return self.int_(d, key, "stats.", unsigned=True)

        return BlockStats(
            num_samples=n("numSamples"),
            num_series=n("numSeries"),
            num_chunks=n("numChunks"),
            num_tombstones=n("numTombstones"),
            num_float_samples=n("numFloatSamples"),
            num_histogram_samples=n("numHistogramSamples"),
        )

    def compaction(self, d: Mapping[str, Any], meta: BlockMeta) -> None:
        where = "compaction."
        meta.level = self.int_(d, "level", where)
        meta.sources = [self.ulid(s, f"{where}sources entry") for s in self.list_(d, "sources", where)]
        meta.parents = [self.parent(p) for p in self.list_(d, "parents", where)]
        meta.deletable = self.bool_(d, "deletable", where)
        meta.failed = self.bool_(d, "failed", where)
        meta.hints = self.str_list(d, "hints", where)

    def parent(self, value: object) -> BlockDesc:
        d = self.obj(value, "compaction.parents entry", nullable=False)
        where = "compaction.parents[]."
        return BlockDesc(
            ulid=self.ulid(d.get("ulid"), f"{where}ulid"),
            min_time=self.int_(d, "minTime", where),
            max_time=self.int_(d, "maxTime", where),
        )

    def thanos(self, value: object) -> ThanosMeta:
        d = self.obj(value, "thanos", nullable=False)
        where = "thanos."
        version = self.int_(d, "version", where)
        if version not in (0, THANOS_VERSION):
            self.fail(f"unsupported thanos.version {version}")
        resolution = self.int_(self.obj(d.get("downsample"), "thanos.downsample"), "resolution",
                               "thanos.downsample.")
        if resolution not in VALID_RESOLUTIONS:
            self.fail(f"thanos.downsample.resolution {resolution} is not 0, 300000 or 3600000")
        upload_time = self.str_(d, "upload_time", where) or ZERO_TIME
        try:
            parse_go_time(upload_time)
        except ValueError:
            self.fail(f"thanos.upload_time is not an RFC3339 time: {upload_time!r}")
        stats_doc = self.obj(d.get("index_stats"), "thanos.index_stats")
        index_stats = IndexStats(
            series_max_size=self.int_(stats_doc, "series_max_size", "thanos.index_stats.", unsigned=True),
            chunk_max_size=self.int_(stats_doc, "chunk_max_size", "thanos.index_stats.", unsigned=True),
        )
        return ThanosMeta(
            labels=self.labels(d.get("labels")),
            resolution=resolution,
            source=self.str_(d, "source", where),
            segment_files=self.str_list(d, "segment_files", where),
            files=[self.file(f) for f in self.list_(d, "files", where)],
            index_stats=index_stats,
            upload_time=upload_time,
            rewrites=[self.obj(r, "thanos.rewrites entry", nullable=False)
                      for r in self.list_(d, "rewrites", where)],
            extensions=d.get("extensions"),
            version=version,
        )

    def labels(self, value: object) -> dict[str, str]:
        d = self.obj(value, "thanos.labels")
        for name, v in d.items():
            if not isinstance(v, str):
                self.fail(f"thanos.labels.{name} must be a string, got {_kind(v)}")
        return dict(d)

    def file(self, value: object) -> BlockFile:
        d = self.obj(value, "thanos.files entry", nullable=False)
        where = "thanos.files[]."
        rel_path = self.str_(d, "rel_path", where)
        hash_doc = d.get("hash")
        file_hash = None
        if hash_doc is not None:
            h = self.obj(hash_doc, "thanos.files[].hash", nullable=False)
            file_hash = FileHash(func=self.str_(h, "hashFunc", f"{where}hash."),
                                 value=self.str_(h, "value", f"{where}hash."))
        return BlockFile(rel_path=rel_path, size_bytes=self.int_(d, "size_bytes", where, unsigned=True),
                         hash=file_hash)


def _depth(doc: object) -> int:
    """Nesting depth of a parsed JSON value, without recursion (a scalar is 0, ``[]`` is 1)."""
    deepest = 0
    todo: list[tuple[object, int]] = [(doc, 0)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            level += 1
            if level > deepest:
                deepest = level
                if deepest > MAX_META_DEPTH:
                    break
            todo.extend((v, level) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- files ----------------------------------------------------------------------------------------


def read_meta_file(path: str | os.PathLike[str]) -> BlockMeta:
    """Read ``meta.json`` from a block directory or from the file's own path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, META_FILENAME)
    block_dir = os.path.basename(os.path.dirname(os.path.abspath(path)))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return BlockMeta.from_json(data, block=block_dir if is_ulid(block_dir) else None)


def write_meta_file(path: str | os.PathLike[str], meta: BlockMeta, *, style: MetaStyle = "thanos") -> None:
    """Write ``meta.json`` atomically (temp file, fsync, rename) into a block directory or to ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, META_FILENAME)
    atomic_write(path, meta.to_json(style), fsync=True)
