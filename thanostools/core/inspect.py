"""What is in a bucket: blocks with meta, size and marks from one listing plus the meta.json files."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from thanostools.core.blockio import fetch_meta
from thanostools.core.constants import RESOLUTIONS_BY_NAME
from thanostools.core.errors import ConfigError, CorruptBlockError, NotFoundError, ThanosToolsError
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.tsdb.markers import MarkerKind
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.ulid import is_ulid

META = "meta.json"
MARK_NAMES = {MarkerKind.DELETION.filename: "deletion", MarkerKind.NO_COMPACT.filename: "no-compact",
              MarkerKind.NO_DOWNSAMPLE.filename: "no-downsample"}
# Besides the names, the numbers of milliseconds that meta.json holds, and Thanos's "0s" for raw.
_RESOLUTION_SPELLINGS = {**RESOLUTIONS_BY_NAME, **{str(ms): ms for ms in RESOLUTIONS_BY_NAME.values()}, "0s": 0}


@dataclass
class BlockInfo:
    meta: BlockMeta
    files: dict[str, int]
    marks: list[str]

    @property
    def ulid(self) -> str:
        return self.meta.ulid

    @property
    def size_bytes(self) -> int:
        return sum(self.files.values())


@dataclass
class BucketScan:
    blocks: list[BlockInfo] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    broken: dict[str, ThanosToolsError] = field(default_factory=dict)

    def by_id(self, ulid: str) -> BlockInfo:
        for b in self.blocks:
            if b.ulid == ulid:
                return b
        if ulid in self.broken:
            raise self.broken[ulid]
        if ulid in self.partial:
            raise NotFoundError(f"block {ulid} has no meta.json (partial upload)")
        raise NotFoundError(f"block {ulid} not found in bucket")


def scan_bucket(bucket: Bucket, *, concurrency: int = 32) -> BucketScan:
    """List the bucket once, then read every meta.json concurrently. Never writes."""
    files: dict[str, dict[str, int]] = {}
    for key, size in bucket.list_prefix("").items():
        top, _, rest = key.partition("/")
        if is_ulid(top) and rest:
            files.setdefault(top, {})[rest] = size
    with_meta = sorted(u for u, f in files.items() if META in f)
    scan = BucketScan()
    for ulid in sorted(u for u, f in files.items() if META not in f):
        if bucket.has_entry(f"{ulid}/{META}"):  # a directory or a dangling link where meta.json belongs
            scan.broken[ulid] = CorruptBlockError("meta.json is not a readable file", block=ulid, file=META)
        else:
            scan.partial.append(ulid)

    def load(ulid: str) -> BlockMeta | ThanosToolsError:
        try:
            return fetch_meta(bucket, ulid)
        except ThanosToolsError as exc:
            return exc

    if bucket.is_local:  # reading small local files is CPU work: threads would only contend for the GIL
        results = [load(u) for u in with_meta]
    else:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(with_meta)))) as pool:
            results = list(pool.map(load, with_meta)) if with_meta else []
    for ulid, res in zip(with_meta, results, strict=True):
        if isinstance(res, ThanosToolsError):
            scan.broken[ulid] = res
            continue
        block_files = files[ulid]
        marks = sorted(MARK_NAMES[n] for n in block_files if n in MARK_NAMES)
        data_files = {n: s for n, s in block_files.items() if n not in MARK_NAMES}
        scan.blocks.append(BlockInfo(res, data_files, marks))
    scan.blocks.sort(key=lambda b: (b.meta.min_time, b.ulid))
    return scan


def human_bytes(n: int) -> str:
    """``512B``, ``1.5KiB``, ``2.0GiB``: a block or file size for people."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"


def parse_resolution(text: str) -> int:
    try:
        return _RESOLUTION_SPELLINGS[text.strip().lower()]
    except KeyError:
        raise ConfigError(f"invalid resolution {text!r} (use raw, 5m or 1h)") from None


def parse_label_selectors(selectors: Sequence[str]) -> list[Matcher]:
    """``k=v``, ``k!=v``, ``k=~re``, ``k!~re`` (external label selectors on the command line)."""
    out = []
    for sel in selectors:
        for op in ("=~", "!~", "!=", "="):
            name, sep, value = sel.partition(op)
            if sep and name and "=" not in name and "!" not in name:
                out.append(Matcher(MatchType(op), name.strip(), value.strip().strip('"')))
                break
        else:
            raise ConfigError(f"invalid selector {sel!r} (use name=value, name!=value, name=~regex, name!~regex)")
    return out


@dataclass(frozen=True)
class BlockFilter:
    min_time: int | None = None
    max_time: int | None = None
    selectors: tuple[Matcher, ...] = ()
    resolution: int | None = None
    exclude_deleted: bool = False
    ids: tuple[str, ...] = ()

    def accepts(self, info: BlockInfo) -> bool:
        m = info.meta
        if self.ids and m.ulid not in self.ids:
            return False
        if self.min_time is not None and m.max_time <= self.min_time:
            return False
        if self.max_time is not None and m.min_time >= self.max_time:
            return False
        if self.resolution is not None and m.resolution != self.resolution:
            return False
        if self.exclude_deleted and "deletion" in info.marks:
            return False
        return _labels_match(self.selectors, m.external_labels)


def _labels_match(matchers: Sequence[Matcher], labels: Labels) -> bool:
    d = dict(labels)
    return all(m.matches(d.get(m.name, "")) for m in matchers)
