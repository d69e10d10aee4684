"""Index reading and writing: promtool-made indexes, our own round trips, v1 indexes, matcher semantics."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures_prom import needs_promtool, promtool_create_blocks
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels.binary import crc32c
from thanostools.core.labels import Labels, get
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.tsdb.bytesource import MemorySource, MmapSource
from thanostools.core.tsdb.index import IndexReader
from thanostools.core.tsdb.index_writer import IndexBuilder
from thanostools.core.varint import encode_uvarint as uv
from thanostools.core.varint import encode_varint

FORMATS_EXAMPLE = """# TYPE my_metric gauge
my_metric{a="1"} 1 1000
my_metric{a="1"} 2 1015
my_metric{a="1"} 2.5 1030
my_metric{a="1"} 4 1045
my_metric{a="2"} 10 1000
# EOF
"""


@needs_promtool
def test_reads_formats_worked_example(tmp_path: Path) -> None:
    """The annotated index of FORMATS.md §2.10, as promtool writes it."""
    out = promtool_create_blocks(FORMATS_EXAMPLE, tmp_path / "out")
    idx_path = next(out.glob("*/index"))
    data = idx_path.read_bytes()
    assert len(data) == 344
    r = IndexReader(MmapSource(str(idx_path)))
    assert (r.toc.symbols, r.toc.series, r.toc.label_indices, r.toc.label_indices_table, r.toc.postings,
            r.toc.postings_table) == (5, 0x2B, 0x60, 0xD4, 0x8C, 0xEF)
    assert r.symbols == ["", "1", "2", "__name__", "a", "my_metric"]
    assert r.all_postings().tolist() == [3, 5]
    sb = r.series(r.all_postings())
    assert sb.labels == [(("__name__", "my_metric"), ("a", "1")), (("__name__", "my_metric"), ("a", "2"))]
    assert sb.chunk_mint.tolist() == [1000000, 1000000]
    assert sb.chunk_maxt.tolist() == [1045000, 1000000]
    assert sb.chunk_ref.tolist() == [8, 36]
    assert data[48:66].hex() == "0d0203050401018089 7ac8df0208733d5fd5".replace(" ", "")


def _build(series: list[tuple[Labels, list[tuple[int, int, int]]]], path: Path) -> IndexReader:
    b = IndexBuilder()
    for labels, chunks in series:
        arr = np.array(chunks, dtype=np.int64).reshape(-1, 3)
        b.add(labels, arr[:, 0], arr[:, 1], arr[:, 2])
    b.write(str(path))
    return IndexReader(MmapSource(str(path)))


label_values = st.text(alphabet="abcxyz\u00e9\u4e2d\"\\\n", min_size=1, max_size=4)
label_sets = st.dictionaries(st.sampled_from(["__name__", "a", "b", "job", "z_last"]), label_values, min_size=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(label_sets, min_size=0, max_size=40, unique_by=lambda d: tuple(sorted(d.items()))))
def test_round_trip_random_label_sets(tmp_path_factory: pytest.TempPathFactory, sets: list[dict[str, str]]) -> None:
    labels = sorted(tuple(sorted(d.items())) for d in sets)
    series = [(lab, [(i * 100, i * 100 + 50, 8 + i * 40), (i * 100 + 60, i * 100 + 90, 8 + i * 40 + 20)])
              for i, lab in enumerate(labels)]
    r = _build(series, tmp_path_factory.mktemp("idx") / "index")
    refs = r.all_postings()
    assert len(refs) == len(labels)
    sb = r.series(refs)
    assert sb.labels == labels
    assert sb.chunk_ref.tolist() == [c[2] for _, cs in series for c in cs]
    assert sb.chunk_maxt.tolist() == [c[1] for _, cs in series for c in cs]
    for name in {n for lab in labels for n, _ in lab}:
        assert r.label_values(name) == sorted({get(lab, name) for lab in labels} - {""})
    if len(refs) > 1:  # read again in reverse, one series alone, and none: the same sets
        assert r.series(refs[::-1]).labels == labels[::-1]
        assert r.series(refs[1:2]).labels == labels[1:2]
    assert r.series(refs[:0]).labels == []


def test_label_sets_share_their_pairs(tmp_path: Path) -> None:
    """Series read in any batches hold the one tuple of each label pair of the index."""
    labels = [(("__name__", "m"), ("i", str(i)), ("job", "api")) for i in range(5)]
    r = _build([(lab, [(0, 10, 8 + 20 * i)]) for i, lab in enumerate(labels)], tmp_path / "index")
    first, second = r.series(r.all_postings()[:3]).labels, r.series(r.all_postings()[2:]).labels
    assert first + second[1:] == labels
    assert len({id(pair) for lab in first + second for pair in lab}) == 2 + 5


def test_postings_for_matchers_agree_with_brute_force(tmp_path: Path) -> None:
    rng = random.Random(4)
    labels = sorted({tuple(sorted({"__name__": rng.choice("mn"), "a": rng.choice(["1", "2", "3"]),
                                    **({"b": rng.choice(["x", "y"])} if rng.random() < 0.6 else {})}.items()))
                     for _ in range(200)})
    r = _build([(lab, [(0, 10, 8)]) for lab in labels], tmp_path / "index")
    refs = r.all_postings().tolist()
    cases = [
        [Matcher(MatchType.EQ, "a", "1")], [Matcher(MatchType.NEQ, "b", "x")], [Matcher(MatchType.EQ, "b", "")],
        [Matcher(MatchType.RE, "a", "1|3"), Matcher(MatchType.NRE, "b", "y")], [Matcher(MatchType.RE, "b", ".*")],
        [Matcher(MatchType.RE, "b", ".+")], [Matcher(MatchType.EQ, "nope", "")], [Matcher(MatchType.EQ, "nope", "v")],
        [Matcher(MatchType.NEQ, "__name__", "m"), Matcher(MatchType.NRE, "a", "2")],
    ]
    for ms in cases:
        expected = [ref for ref, lab in zip(refs, labels, strict=True)
                    if all(m.matches(get(lab, m.name)) for m in ms)]
        assert r.postings_for_matchers(ms).tolist() == expected, ms


def _table(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body + struct.pack(">I", crc32c(np.frombuffer(body, np.uint8), 0, len(body)))


def _v1_index(series: list[tuple[Labels, int, int, int]]) -> bytes:
    """A minimal index in format v1: symbol and series references are file offsets."""
    symbols = sorted({s for lab, *_ in series for pair in lab for s in pair})
    out = bytearray(struct.pack(">IB", 0xBAAAD700, 1))
    sym_body = bytearray(struct.pack(">I", len(symbols)))
    sym_off = {}
    for s in symbols:
        sym_off[s] = 5 + 4 + len(sym_body)
        sym_body += uv(len(s.encode())) + s.encode()
    out += _table(bytes(sym_body))
    toc_series = len(out)
    out += b"\0\0\0"  # v1 has no alignment rules; put some padding anyway
    refs = []
    for lab, mint, maxt, cref in series:
        body = uv(len(lab)) + b"".join(uv(sym_off[n]) + uv(sym_off[v]) for n, v in lab)
        body += uv(1) + encode_varint(mint) + uv(maxt - mint) + uv(cref)
        refs.append(len(out))
        out += uv(len(body)) + body + struct.pack(">I", crc32c(np.frombuffer(body, np.uint8), 0, len(body)))
    postings_start = len(out)
    keys: dict[tuple[str, str], list[int]] = {("", ""): refs}
    for ref, (lab, *_r) in zip(refs, series, strict=True):
        for pair in lab:
            keys.setdefault(pair, []).append(ref)
    offsets = {}
    for key in sorted(keys, reverse=True):  # v1 tables need not be sorted
        offsets[key] = len(out)
        ids = keys[key]
        out += _table(struct.pack(">I", len(ids)) + b"".join(struct.pack(">I", i) for i in ids))
    table_off = len(out)
    entries = b"".join(b"\x02" + uv(len(n)) + n.encode() + uv(len(v)) + v.encode() + uv(o)
                       for (n, v), o in offsets.items())
    out += _table(struct.pack(">I", len(offsets)) + entries)
    toc = struct.pack(">6Q", 5, toc_series, postings_start, table_off, postings_start, table_off)
    out += toc + struct.pack(">I", crc32c(np.frombuffer(toc, np.uint8), 0, 48))
    return bytes(out)


def test_reads_index_v1() -> None:
    series: list[tuple[Labels, int, int, int]] = [((("__name__", "up"), ("job", "a")), 1000, 2000, 8),
                                                   ((("__name__", "up"), ("job", "b")), 1500, 1500, 30)]
    r = IndexReader(MemorySource(_v1_index(series)))
    assert r.version == 1
    refs = r.postings_for_matchers([Matcher(MatchType.EQ, "__name__", "up")])
    sb = r.series(refs)
    assert sb.labels == [s[0] for s in series]
    assert sb.chunk_mint.tolist() == [1000, 1500] and sb.chunk_ref.tolist() == [8, 30]
    assert r.label_values("job") == ["a", "b"]
    assert r.series(r.postings("job", "b")).labels == [series[1][0]]


def test_rejects_index_v3_and_bad_magic() -> None:
    data = bytearray(_v1_index([((("a", "b"),), 0, 1, 8)]))
    data[4] = 3
    with pytest.raises(Exception, match="version 3 is not supported"):
        IndexReader(MemorySource(bytes(data)))
    data[0] = 0
    with pytest.raises(CorruptBlockError, match="bad index magic"):
        IndexReader(MemorySource(bytes(data)))
