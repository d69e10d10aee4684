"""`bucket import` of `bucket dump -o json` output: native histograms read back losslessly (dump → import → dump
gives the same dump) and written as the Prometheus 2.42 head writes them (byte-identical chunks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.clihelp import run_cli
from tests.core.pipeline.test_histogram_pipeline import EDGE, MAIN, SNAPSHOT, block_chunks
from tests.sharedfiles import NATIVE_HISTOGRAMS_DIR
from thanostools.core.tsdb.block import Block

pytestmark = pytest.mark.skipif(not NATIVE_HISTOGRAMS_DIR.is_dir(), reason="native-histogram test data missing")
HINT_ONLY_RESET = {"hint_yes"}  # see tests/core/tsdb/test_writer_histograms.py


def differing_samples(first: str, second: str) -> dict[tuple[str, int], dict[str, tuple[object, object]]]:
    """(case, sample index) -> {field: (first, second)} of the samples whose dump differs (same series and
    timestamps required)."""
    a, b = json.loads(first), json.loads(second)
    assert [d["labels"] for d in a] == [d["labels"] for d in b]
    out: dict[tuple[str, int], dict[str, tuple[object, object]]] = {}
    for x, y in zip(a, b, strict=True):
        assert [s[0] for s in x["samples"]] == [s[0] for s in y["samples"]]
        for i, ((_, u), (_, w)) in enumerate(zip(x["samples"], y["samples"], strict=True)):
            if u != w:
                keys = set(u) | set(w) if isinstance(u, dict) and isinstance(w, dict) else {"value"}
                out[(x["labels"]["case"], i)] = {k: (u.get(k), w.get(k)) if isinstance(u, dict) else (u, w)
                                                 for k in sorted(keys)
                                                 if not isinstance(u, dict) or u.get(k) != w.get(k)}
    return out


def dump(bucket: Path) -> str:
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "-o", "json")
    assert res.exit_code == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("run", ["run1", "run2"])
def test_dump_import_dump_round_trip(tmp_path: Path, run: str) -> None:
    names = {"run1": [MAIN, SNAPSHOT], "run2": [EDGE]}[run]
    original = tmp_path / "original"
    for name in names:
        shutil.copytree(NATIVE_HISTOGRAMS_DIR / name, original / Path(name).name)
    first = dump(original)
    assert '"kind": "int"' in first and '"kind": "float"' in first
    src = tmp_path / "dump.json"
    src.write_text(first)
    res = run_cli("bucket", "import", "--bucket", str(tmp_path / "imported"), str(src), "-o", "json")
    assert res.exit_code == 0, res.stderr
    metas = sorted(res.json(), key=lambda m: m["minTime"])
    assert len(metas) == len(names)
    second = dump(tmp_path / "imported")
    assert differing_samples(first, second) == ({("hint_yes", 5): {"hint": (0, 2)}} if run == "run2" else {})
    for name, meta in zip(sorted(names, key=lambda n: json.loads((NATIVE_HISTOGRAMS_DIR / n / "meta.json")
                                                                   .read_text())["minTime"]), metas, strict=True):
        want = block_chunks(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / name)))
        got = block_chunks(Block.open_dir(str(tmp_path / "imported" / meta["ulid"])))
        assert got.keys() == want.keys()
        differ = {dict(lab)["case"] for lab in want if got[lab] != want[lab]}
        assert differ == (HINT_ONLY_RESET if name == EDGE else set())


def test_import_refuses_bad_dump_json_in_one_line(tmp_path: Path) -> None:
    cases = {
        "not-json.json": "[{",
        "no-labels.json": '[{"samples": [[1000, "1"]]}]',
        "bad-value.json": '[{"labels": {"__name__": "m"}, "samples": [[1000, "one"]]}]',
        "bad-hist.json": '[{"labels": {"__name__": "m"}, "samples": [[1000, {"kind": "int", "count": 1}]]}]',
        "decreasing.json": '[{"labels": {"__name__": "m"}, "samples": [[1000, "1"], [1000, "2"]]}]',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        res = run_cli("bucket", "import", "--bucket", str(tmp_path / "b"), str(tmp_path / name), "--format", "json")
        if name == "decreasing.json":  # a duplicate timestamp: the first wins, as for text
            assert res.exit_code == 0, res.stderr
            continue
        assert res.exit_code == 1, (name, res.stdout, res.stderr)
        assert name in res.stderr and res.stderr.count("\n") == 1, res.stderr
