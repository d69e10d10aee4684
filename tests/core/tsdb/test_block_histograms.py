"""Reading native histograms from real Prometheus 2.42 blocks: ``Block.select``, ``bucket dump``, located errors."""

from __future__ import annotations

import json
import shutil
import struct
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.clihelp import run_cli
from tests.sharedfiles import native_histograms_dir
from thanostools.core.chunkenc.histogram import HistogramSample, build_batch
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import binary as kb
from thanostools.core.matchers import Matcher
from thanostools.core.render.apijson import format_sample_value
from thanostools.core.render.dumpfmt import prom_lines
from thanostools.core.render.histjson import api_histogram
from thanostools.core.series import KIND_FLOAT, SampleBatch
from thanostools.core.storage import select_blocks
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.tombstones import encode_tombstones

DATA = native_histograms_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="shared native-histogram test data not present")
RUN1_MAIN = "01M94ZAZYBH36Q16ZZBE8Y9PW2"


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both runs' blocks copied into one local bucket (shared/ is read-only)."""
    assert DATA is not None
    root = tmp_path_factory.mktemp("nh-bucket")
    for block in sorted(DATA.glob("run*/01*")):
        if block.is_dir():
            shutil.copytree(block, root / block.name)
    return root


def _api_cases() -> list[tuple[str, str]]:
    if DATA is None:
        return []
    # run 2's closing samples stayed in the Prometheus head: they are in no block
    return [(run, f.name) for run in ("run1", "run2") for f in sorted((DATA / run / "api").glob("*.raw.json"))
            if not (run == "run2" and f.name.endswith(".closing.raw.json"))]


def _window(run: str, file_name: str) -> tuple[int, int]:
    """The [start, end] ms of the range query that produced an API file (2.42: both ends inclusive)."""
    assert DATA is not None
    requests = json.loads((DATA / run / "api" / "requests.json").read_text())
    key = "closing_raw" if file_name.endswith(".closing.raw.json") else "raw"
    for paths in requests.values():
        path = paths.get(key, "")
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        if file_name.split(".")[0] == _file_stem(query["query"][0]):
            end = round(float(query["time"][0]) * 1000)
            seconds = int(query["query"][0].rsplit("[", 1)[1].rstrip("s]"))
            return end - seconds * 1000, end
    raise AssertionError(f"no request for {file_name}")


def _file_stem(selector: str) -> str:
    name, rest = selector.split("{", 1)
    return f"{name}__{rest.split(chr(34))[1]}"


def _api_form(batch: SampleBatch) -> tuple[list[list[Any]], list[list[Any]]]:
    """The batch's one series as the API's ``values`` and ``histograms`` (stale markers are never returned)."""
    values: list[list[Any]] = []
    histograms: list[list[Any]] = []
    hist = batch.hist
    for s, (t, v) in enumerate(zip(batch.t.tolist(), batch.v.tolist(), strict=True)):
        if v == STALE_NAN_BITS:
            continue
        if hist is None or int(hist.kind[s]) == KIND_FLOAT:
            values.append([t / 1000, format_sample_value(float(np.uint64(v).view(np.float64)))])
        else:
            histograms.append([t / 1000, api_histogram(hist.batch_of(s), int(hist.row[s]))])
    return values, histograms


def _blocks(bucket: Path, run: str) -> list[Block]:
    assert DATA is not None
    return [Block.open_dir(str(bucket / b.name)) for b in sorted((DATA / run).glob("01*")) if b.is_dir()]


@pytest.mark.parametrize(("run", "file_name"), _api_cases())
def test_every_stored_sample_equals_the_api_answer(bucket: Path, run: str, file_name: str) -> None:
    assert DATA is not None
    result = json.loads((DATA / run / "api" / file_name).read_text())["data"]["result"]
    expected = result[0]
    matchers = [Matcher.eq(k, v) for k, v in expected["metric"].items()]
    mint, maxt = _window(run, file_name)
    batches = list(select_blocks(_blocks(bucket, run), matchers, mint, maxt, histograms=True))
    batch = SampleBatch.concat(batches)
    assert len(batch) == 1
    values, histograms = _api_form(batch)
    assert values == expected.get("values", [])
    assert histograms == expected.get("histograms", [])
    assert len(histograms) > 0


def test_histogram_selections_keep_stale_markers_and_apply_time_ranges(bucket: Path) -> None:
    block = Block.open_dir(str(bucket / RUN1_MAIN))
    t0 = 1796522400000
    (whole,) = block.select([Matcher.eq("case", "stale")], histograms=True)
    stale_t = whole.t[whole.v == np.uint64(STALE_NAN_BITS)].tolist()
    assert stale_t == [t0 + 100_000 * 10, t0 + 110 * 10_000]
    (part,) = block.select([Matcher.eq("case", "stale")], t0 + 995_000, t0 + 1_300_000, histograms=True)
    assert part.t.tolist() == [t for t in whole.t.tolist() if t0 + 995_000 <= t <= t0 + 1_300_000]
    assert part.hist is not None
    rows = [int(r) for r in part.hist.row.tolist()]
    assert [int(part.hist.ints.t[r]) for r in rows] == part.t.tolist()


def test_float_only_readers_still_refuse_histogram_chunks(bucket: Path) -> None:
    block = Block.open_dir(str(bucket / RUN1_MAIN))
    with pytest.raises(Exception, match=r"chunk encoding 2 \(histogram\) is not supported yet"):
        list(block.select([Matcher.eq("case", "worked_int")]))


def test_tombstones_apply_to_histogram_samples(tmp_path: Path) -> None:
    assert DATA is not None
    dst = tmp_path / RUN1_MAIN
    shutil.copytree(DATA / "run1" / RUN1_MAIN, dst)
    block = Block.open_dir(str(dst))
    (before,) = block.select([Matcher.eq("case", "worked_int")], histograms=True)
    ref = int(before.refs[0])
    (dst / "tombstones").write_bytes(encode_tombstones({ref: [(int(before.t[1]), int(before.t[1]))]}))
    (after,) = Block.open_dir(str(dst)).select([Matcher.eq("case", "worked_int")], histograms=True)
    assert after.t.tolist() == [before.t[0], before.t[2]]
    _, hist_after = _api_form(after)
    _, hist_before = _api_form(before)
    assert hist_after == [hist_before[0], hist_before[2]]


def test_dump_prom_prints_histograms_as_promtool_3(bucket: Path) -> None:
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "--id", RUN1_MAIN, "--match", "nh_tiny")
    assert res.exit_code == 0, res.stderr
    zero = "[-2.938735877055719e-39,2.938735877055719e-39]"
    assert res.stdout.splitlines() == [
        f'{{__name__="nh_tiny", case="worked_int"}} {{count:5, sum:3.5, [-1,-0.5):1, {zero}:1, (0.5,1]:2, (1,2]:1}} '
        "1796522400000",
        f'{{__name__="nh_tiny", case="worked_int"}} {{count:10, sum:8.25, [-1,-0.5):1, {zero}:2, (0.5,1]:4, (1,2]:3}} '
        "1796522410000",
        # HISTOGRAMS.md H15.2's example, verbatim
        '{__name__="nh_tiny", case="worked_int"} '
        "{count:14, sum:12, [-1,-0.5):2, [-2.938735877055719e-39,2.938735877055719e-39]:2, (0.5,1]:5, (1,2]:5} "
        "1796522425000",
    ]
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "--id", RUN1_MAIN, "--match", "nh_tiny_float")
    assert res.stdout.splitlines()[0] == (
        f'{{__name__="nh_tiny_float", case="worked_float"}} {{count:2.5, sum:1.25, {zero}:0.5, (0.5,1]:1, (1,2]:1}} '
        "1796522400000")
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "--id", RUN1_MAIN, "--match", '{case="stale"}')
    assert '{__name__="nh_stale", case="stale"} {count:0, sum:NaN} 1796523400000' in res.stdout.splitlines()


def _sample_from_document(t: int, doc: dict[str, Any]) -> tuple[HistogramSample, bool]:
    is_float = doc["kind"] == "float"
    if doc.get("stale"):
        return HistogramSample(t=t, count=0, zero_count=0, sum=float("nan"), stale=True), is_float
    number = float if is_float else int
    return HistogramSample(
        t=t, count=number(doc["count"]), zero_count=number(doc["zero_count"]), sum=float(doc["sum"]),
        schema=doc["schema"], zero_threshold=float(doc["zero_threshold"]),
        positive_spans=tuple(tuple(s) for s in doc["positive_spans"]),
        positive_buckets=tuple(number(x) for x in doc["positive_buckets"]),
        negative_spans=tuple(tuple(s) for s in doc["negative_spans"]),
        negative_buckets=tuple(number(x) for x in doc["negative_buckets"]), hint=doc["hint"],
    ), is_float


def test_dump_json_is_lossless(bucket: Path) -> None:
    """Every run-2 sample rebuilt from ``dump -o json`` renders as the API answered; integer counts are exact."""
    assert DATA is not None
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "--id", "01M94ZPHPTYFJKBQ1PMXW21M19", "-o", "json")
    assert res.exit_code == 0, res.stderr
    docs = json.loads(res.stdout)
    assert len(docs) == 8
    block = Block.open_dir(str(bucket / "01M94ZPHPTYFJKBQ1PMXW21M19"))
    for doc in docs:
        values: list[list[Any]] = []
        histograms: list[list[Any]] = []
        for t, value in doc["samples"]:
            if isinstance(value, str):
                if value != "NaN":
                    values.append([t / 1000, format_sample_value(float(value))])
                continue
            sample, is_float = _sample_from_document(t, value)
            if not sample.stale:
                histograms.append([t / 1000, api_histogram(build_batch([sample], is_float=is_float), 0)])
        (batch,) = block.select([Matcher.eq(k, v) for k, v in doc["labels"].items()], histograms=True)
        assert (values, histograms) == _api_form(batch)
        if doc["labels"]["case"] == "varbit":
            assert batch.hist is not None
            assert [s[1]["count"] for s in doc["samples"]] == batch.hist.ints.count.tolist()
            assert max(batch.hist.ints.count.tolist()) > 2**60  # beyond float64's exact integers


def test_dump_openmetrics_refuses_histograms(bucket: Path) -> None:
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "--id", RUN1_MAIN, "--match", "nh_tiny", "-o",
                  "openmetrics")
    assert res.exit_code == 1
    assert "native histograms" in res.stderr and "Traceback" not in res.stderr


def _corrupt_chunk(block_dir: Path, case: str) -> int:
    """Garble the payload of the series' first histogram chunk (CRC fixed up); returns the record offset."""
    block = Block.open_dir(str(block_dir))
    refs = block.postings([Matcher.eq("case", case)])
    ref = int(block.index.series(refs).chunk_ref[0])
    offset = ref & 0xFFFFFFFF
    seg = block_dir / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    buf = np.frombuffer(bytes(data), np.uint8)
    length, start = kb.uvarint(buf, offset, buf.shape[0])  # start: the encoding byte, then the payload
    data[start + 1 + 3 : start + 1 + length] = b"\xff" * (length - 3)  # header kept, layout garbled
    crc = kb.crc32c(np.frombuffer(bytes(data), np.uint8), start, start + 1 + length)
    data[start + 1 + length : start + 5 + length] = struct.pack(">I", crc)
    seg.write_bytes(bytes(data))
    return offset


def test_corrupt_histogram_chunk_gives_a_located_error(tmp_path: Path) -> None:
    assert DATA is not None
    dst = tmp_path / "b" / RUN1_MAIN
    shutil.copytree(DATA / "run1" / RUN1_MAIN, dst)
    offset = _corrupt_chunk(dst, "worked_int")
    with pytest.raises(CorruptBlockError) as info:
        list(Block.open_dir(str(dst)).select([Matcher.eq("case", "worked_int")], histograms=True))
    message = str(info.value)
    assert f"block {RUN1_MAIN}" in message and "file chunks/000001" in message and f"offset {offset}" in message
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path / "b"), "--match", "nh_tiny")
    assert res.exit_code == 1
    assert f"offset {offset}" in res.stderr and "Traceback" not in res.stderr


def test_verify_deep_decodes_histogram_chunks(bucket: Path, tmp_path: Path) -> None:
    assert DATA is not None
    assert run_cli("bucket", "verify", "--bucket", str(bucket), "--deep").exit_code == 0
    dst = tmp_path / RUN1_MAIN
    shutil.copytree(DATA / "run1" / RUN1_MAIN, dst)
    offset = _corrupt_chunk(dst, "worked_float")
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--deep", "-o", "json")
    assert res.exit_code == 3
    (issue,) = [i for i in res.json()["issues"] if i["id"] == "chunk_integrity"]
    assert issue["kind"] == "undecodable_chunk" and issue["blocks"] == [RUN1_MAIN]
    (finding,) = issue["details"]["bad_chunks"]
    assert (finding["file"], finding["offset"]) == ("chunks/000001", offset)
    assert finding["reason"].startswith("histogram chunk does not decode: ")


def test_analyze_extended_counts_histogram_series_and_buckets(bucket: Path) -> None:
    res = run_cli("bucket", "analyze", "--bucket", str(bucket), "--id", "01M94ZPHPTYFJKBQ1PMXW21M19", "--extended",
                  "-o", "json")
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    doc = doc[0] if isinstance(doc, list) else doc
    # 8 series; the mixed one has 2 XOR chunks; 224 samples - 20 floats - 2 stale markers
    assert doc["native_histograms"] == {"series": 8, "chunks": 13, "samples": 202, "buckets_min": 1,
                                        "buckets_p50": 2, "buckets_p90": 2, "buckets_p99": 2, "buckets_max": 3}
    text = run_cli("bucket", "analyze", "--bucket", str(bucket), "--id", "01M94ZPHPTYFJKBQ1PMXW21M19", "--extended")
    assert "Native histograms: 8 series, 13 chunks, 202 samples" in text.stdout


def test_copying_reader_split_and_concat_keep_histograms(bucket: Path) -> None:
    block = Block.open_dir(str(bucket / RUN1_MAIN))
    (in_place,) = block.select(histograms=True)
    block.locate_chunks = lambda refs: None  # type: ignore[method-assign]  # as for remote or multi-segment blocks
    (copied,) = block.select(histograms=True)
    expected = prom_lines(in_place)
    assert prom_lines(copied) == expected
    parts = list(in_place.split(100))
    assert len(parts) > 5
    assert "".join(prom_lines(p) for p in parts) == expected
    assert prom_lines(SampleBatch.concat(parts)) == expected
    compacted = [SampleBatch(p.labels, p.refs, p.offsets, p.t, p.v, hist=p.hist.compact()) for p in parts
                 if p.hist is not None]
    assert prom_lines(SampleBatch.concat(compacted)) == expected
