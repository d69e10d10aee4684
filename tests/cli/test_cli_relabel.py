"""``bucket relabel`` / ``bucket rewrite`` end to end: the dump of each rewritten block equals the dump of its
source transformed by the configs (computed here by hand), for raw and 5m blocks; change logs; dry runs;
resumability; external labels with the group preview; errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.clihelp import run_cli
from tests.fixtures_prom import needs_promtool, promtool_dump
from tests.fixtures_s3 import S3TestBucket
from thanostools.core.goformat import go_labels_string
from thanostools.core.tsdb.writer import BlockWriter

HOUR = 3_600_000
START = 1_700_006_400_000
DEL_LO, DEL_HI = START + 20 * HOUR, START + 22 * HOUR - 1
RELABEL = """
- source_labels: [__name__, mode]
  regex: 'node_cpu;(idle|iowait)'
  target_label: mode
  replacement: 'wait_$1'
- action: labeldrop
  regex: cpu
- source_labels: [__name__]
  regex: 'debug_.*'
  action: drop
"""
DELETE = f"""
- matchers: '{{__name__="node_cpu", mode="user"}}'
  intervals: [{{mint: {DEL_LO}, maxt: {DEL_HI}}}]
- matchers: 'temp'
"""
Dump = dict[tuple[tuple[str, str], ...], dict[int, str]]


def new_labels(labels: dict[str, str]) -> dict[str, str] | None:
    """RELABEL, by hand."""
    d = dict(labels)
    if d["__name__"] == "node_cpu" and d.get("mode") in ("idle", "iowait"):
        d["mode"] = "wait_" + d["mode"]
    d.pop("cpu", None)
    return None if d["__name__"].startswith("debug_") else d


def deleted(labels: dict[str, str]) -> list[tuple[int, int]] | None:
    """DELETE, by hand."""
    if labels["__name__"] == "node_cpu" and labels.get("mode") == "user":
        return [(DEL_LO, DEL_HI)]
    return [] if labels["__name__"] == "temp" else None


def key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def transform(source: Dump) -> Dump:
    out: Dump = {}
    for lab, samples in sorted(source.items()):
        new = new_labels(dict(lab))
        if new is None:
            continue
        merged = out.setdefault(key(new), {})
        for t, v in samples.items():
            merged.setdefault(t, v)  # the first series (in label order) wins a shared timestamp
    result: Dump = {}
    for lab, samples in out.items():
        dels = deleted(dict(lab))
        if dels != []:
            result[lab] = {t: v for t, v in sorted(samples.items()) if not any(a <= t <= b for a, b in dels or [])}
    return result


def write_raw(bucket: Path, labels: dict[str, str], hours: int = 48) -> str:
    t = START + np.arange(0, hours * HOUR, 60_000, dtype=np.int64)
    series = {
        (("__name__", "debug_x"),): (t, np.ones(t.shape[0])),
        (("__name__", "node_cpu"), ("cpu", "0"), ("mode", "idle")): (t, np.cumsum(np.full(t.shape[0], 0.5))),
        (("__name__", "node_cpu"), ("cpu", "0"), ("mode", "iowait")): (t, np.cumsum(np.full(t.shape[0], 0.1))),
        (("__name__", "node_cpu"), ("cpu", "0"), ("mode", "user")): (t, np.cumsum(np.full(t.shape[0], 0.25))),
        (("__name__", "node_cpu"), ("cpu", "1"), ("mode", "idle")): (t + np.where(np.arange(t.shape[0]) % 3, 20_000, 0),
                                                                     np.cumsum(np.full(t.shape[0], 0.75))),
        (("__name__", "node_cpu"), ("cpu", "1"), ("mode", "user")): (t + 30_000, np.arange(t.shape[0], dtype=float)),
        (("__name__", "temp"),): (t, np.sin(np.arange(t.shape[0]))),
        (("__name__", "up"),): (t, np.ones(t.shape[0])),
    }
    w = BlockWriter(str(bucket), min_time=START, max_time=START + hours * HOUR, external_labels=labels,
                    source="sidecar")
    for lab in sorted(series):
        w.add_samples(lab, *series[lab])
    return w.finish().ulid


def dump(bucket: Path, ulid: str, aggregate: str = "count") -> Dump:
    res = run_cli("bucket", "dump", "--bucket", str(bucket), "--id", ulid, "--aggregate", aggregate, "-o", "json")
    assert res.exit_code == 0, res.stderr
    return {key(s["labels"]): {t: v for t, v in s["samples"]} for s in res.json()}


def relabel(bucket: Path, *args: str) -> Any:
    res = run_cli("bucket", "relabel", "--bucket", str(bucket), *args)
    assert res.exit_code == 0, res.stderr
    return res


@pytest.fixture
def configs(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "relabel.yaml").write_text(RELABEL)
    (tmp_path / "delete.yaml").write_text(DELETE)
    return str(tmp_path / "relabel.yaml"), str(tmp_path / "delete.yaml")


@pytest.fixture
def bucket(tmp_path: Path) -> tuple[Path, str, str]:
    root = tmp_path / "bucket"
    root.mkdir()
    raw = write_raw(root, {"cluster": "eu1"})
    res = run_cli("bucket", "downsample", "--bucket", str(root), "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    return root, raw, res.json()[0]["output"]


def test_dry_run_is_the_default_and_changes_nothing(bucket: tuple[Path, str, str], configs: tuple[str, str]) -> None:
    root, raw, five = bucket
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    res = relabel(root, "--relabel-config-file", configs[0], "--delete-config-file", configs[1])
    assert "dry run" in res.stderr
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    assert sorted((r[0], r[2]) for r in rows) == sorted([(raw, "would-rewrite"), (five, "would-rewrite")])
    raw_row = next(r for r in rows if r[0] == raw)
    # 8 series in, 4 out: debug_x dropped, temp deleted, the five node_cpu series relabelled (cpu 0/1 idle and
    # cpu 0/1 user merge)
    assert raw_row[3:8] == ["8->4", "1", "1", "5", "2"]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_a_rewrite_that_matches_nothing_writes_nothing(bucket: tuple[Path, str, str], tmp_path: Path) -> None:
    root, raw, five = bucket
    config = tmp_path / "noop.yaml"
    config.write_text("- action: drop\n  source_labels: [__name__]\n  regex: no_such_metric\n")
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    res = relabel(root, "--relabel-config-file", str(config), "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    assert sorted((r[0], r[2]) for r in rows) == sorted([(raw, "unchanged"), (five, "unchanged")])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before  # no block, no mark


def test_rewrite_raw_and_downsampled_blocks(bucket: tuple[Path, str, str], configs: tuple[str, str],
                                            tmp_path: Path) -> None:
    root, raw, five = bucket
    expected_raw = transform(dump(root, raw))
    expected_5m = {a: transform(dump(root, five, a)) for a in ("count", "sum", "min", "max")}
    res = relabel(root, "--relabel-config-file", configs[0], "--delete-config-file", configs[1], "--no-dry-run",
                  "--change-log-dir", str(tmp_path / "logs"), "-o", "json")
    doc = res.json()
    assert doc["dry_run"] is False
    by_source = {b["source"]: b for b in doc["blocks"]}
    assert {b["status"] for b in doc["blocks"]} == {"rewritten"} and all(b["marked_for_deletion"]
                                                                         for b in doc["blocks"])
    new_raw, new_5m = by_source[raw]["new_ulid"], by_source[five]["new_ulid"]
    assert dump(root, new_raw) == expected_raw
    for agg, expected in expected_5m.items():
        assert dump(root, new_5m, agg) == expected, agg
    # the untouched series keeps even its counter aggregate
    assert dump(root, new_5m, "counter")[(("__name__", "up"),)] == dump(root, five, "counter")[(("__name__", "up"),)]
    for ulid in (raw, five):
        assert (root / ulid / "deletion-mark.json").exists()
        assert json.loads((root / ulid / "deletion-mark.json").read_text())["details"] == "block rewritten"
    meta = json.loads((root / new_5m / "meta.json").read_text())
    assert meta["thanos"]["downsample"]["resolution"] == 300_000 and meta["thanos"]["source"] == "bucket.rewrite"
    assert meta["thanos"]["rewrites"][-1]["sources"] == [raw]


def go_intervals(intervals: list[tuple[int, int]]) -> str:
    return "[" + " ".join(f"{{{a} {b}}}" for a, b in intervals) + "]"


def thanos_deleted(times: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """Thanos logs a partial deletion against the merged series cut into 120-sample chunks: whole chunks inside
    the interval, the overlap for the others, joined when they touch."""
    parts = []
    for k in range(0, len(times), 120):
        a, b = times[k], times[min(k + 120, len(times)) - 1]
        if a <= hi and lo <= b:
            parts.append((max(a, lo), min(b, hi)))
    merged: list[tuple[int, int]] = []
    for a, b in parts:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def test_change_log_lists_exactly_the_changed_series(bucket: tuple[Path, str, str], configs: tuple[str, str],
                                                     tmp_path: Path) -> None:
    root, raw, _ = bucket
    source = dump(root, raw)
    logs = tmp_path / "logs"
    relabel(root, "--relabel-config-file", configs[0], "--delete-config-file", configs[1], "--id", raw,
            "--change-log-dir", str(logs))
    lines = (logs / f"{raw}.change.log").read_text().splitlines()
    expected = []
    outputs: dict[tuple[tuple[str, str], ...], set[int]] = {}
    for lab in sorted(source):
        new = new_labels(dict(lab))
        if new is None:
            expected.append(f"Deleted {go_labels_string(lab)} {go_intervals([(min(source[lab]), max(source[lab]))])}")
            continue
        if key(new) != lab:
            expected.append(f"Relabelled {go_labels_string(lab)} {go_labels_string(key(new))}")
        outputs.setdefault(key(new), set()).update(source[lab])
    for lab in sorted(outputs):
        dels = deleted(dict(lab))
        times = sorted(outputs[lab])
        if dels == []:
            expected.append(f"Deleted {go_labels_string(lab)} {go_intervals([(times[0], times[-1])])}")
        elif dels:
            expected.append(f"Deleted {go_labels_string(lab)} {go_intervals(thanos_deleted(times, DEL_LO, DEL_HI))}")
    assert lines == expected
    assert sum(line.startswith("Deleted") for line in lines) == 3


def test_interrupted_run_resumes(bucket: tuple[Path, str, str], configs: tuple[str, str]) -> None:
    root, raw, five = bucket
    args = ("--relabel-config-file", configs[0], "--delete-config-file", configs[1], "--no-dry-run", "-o", "json")
    first = relabel(root, *args, "--keep-original").json()  # as if the run died before marking
    assert not (root / raw / "deletion-mark.json").exists()
    blocks = sorted(os.listdir(root))
    second = relabel(root, *args).json()
    statuses = {b["source"]: (b["status"], b["new_ulid"]) for b in second["blocks"]}
    for b in first["blocks"]:
        assert statuses[b["source"]] == ("already-rewritten", b["new_ulid"])
        assert statuses[b["new_ulid"]][0] == "is-rewrite-output"
    assert sorted(os.listdir(root)) == blocks
    assert (root / raw / "deletion-mark.json").exists() and (root / five / "deletion-mark.json").exists()


def test_rewrite_alias_and_thanos_flag_names(bucket: tuple[Path, str, str], configs: tuple[str, str]) -> None:
    root, raw, _ = bucket
    res = run_cli("bucket", "rewrite", "--bucket", str(root), "--id", raw, "--rewrite.to-relabel-config-file",
                  configs[0], "--rewrite.to-delete-config-file", configs[1], "-o", "json")
    assert res.exit_code == 0, res.stderr
    (block,) = res.json()["blocks"]
    assert block["status"] == "would-rewrite" and block["stats"]["series_out"] == 4
    assert "rewrite" in run_cli("bucket", "--help").stdout


def test_external_labels_preview_and_apply(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    a = write_raw(root, {"cluster": "eu1", "replica": "0"}, hours=2)
    b = write_raw(root, {"cluster": "eu1", "replica": "1"}, hours=2)
    res = relabel(root, "--drop-external-label", "replica")
    assert "GROUP-AFTER" in res.stdout and "cluster=eu1,replica=0 + cluster=eu1,replica=1" in res.stdout
    doc = relabel(root, "--drop-external-label", "replica", "--external-labels", "env=prod", "--no-dry-run",
                  "-o", "json").json()
    assert doc["group_merges"] == [{"resolution": "raw", "labels": {"cluster": "eu1", "env": "prod"},
                                    "merged_from": [{"cluster": "eu1", "replica": "0"},
                                                    {"cluster": "eu1", "replica": "1"}], "blocks": 2}]
    new = [blk["new_ulid"] for blk in doc["blocks"]]
    ls = run_cli("bucket", "ls", "--bucket", str(root), "--exclude-delete", "-o", "json").json()
    assert sorted(m["ulid"] for m in ls) == sorted(new)
    assert all(m["thanos"]["labels"] == {"cluster": "eu1", "env": "prod"} for m in ls)
    assert dump(root, new[0]) == dump(root, a) and dump(root, new[1]) == dump(root, b)


@pytest.mark.parametrize(("args", "message"), [
    ((), "give --relabel-config-file"),
    (("--relabel-config", "- action: nope"), "relabel config #1: unknown relabel action 'nope'"),
    (("--delete-config", "- matchers: 'a{'"), "deletion request #1: matchers"),
    (("--relabel-config-file", "/nonexistent.yaml"), "relabel config file /nonexistent.yaml"),
    (("--external-labels", "a-b=1"), "not a valid label name"),
])
def test_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    res = run_cli("bucket", "relabel", "--bucket", str(tmp_path), *args)
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_relabel_on_s3(tmp_path: Path, s3_bucket: S3TestBucket, configs: tuple[str, str]) -> None:
    local = tmp_path / "local"
    local.mkdir()
    ulid = write_raw(local, {"cluster": "eu1"}, hours=2)
    config = s3_bucket.write_config(tmp_path)
    assert run_cli("bucket", "upload", "--objstore.config-file", config, str(local / ulid)).exit_code == 0
    res = run_cli("bucket", "relabel", "--objstore.config-file", config, "--relabel-config-file", configs[0],
                  "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    (block,) = res.json()["blocks"]
    keys = s3_bucket.object_keys()
    assert f"{block['new_ulid']}/meta.json" in keys and f"{ulid}/deletion-mark.json" in keys
    assert not any(k.endswith("change.log") or k.endswith("tombstones") for k in keys)


@needs_promtool
def test_promtool_reads_the_rewritten_raw_block(bucket: tuple[Path, str, str], configs: tuple[str, str],
                                                tmp_path: Path) -> None:
    root, raw, _ = bucket
    doc = relabel(root, "--relabel-config-file", configs[0], "--delete-config-file", configs[1], "--id", raw,
                  "--no-dry-run", "-o", "json").json()
    new = doc["blocks"][0]["new_ulid"]
    alone = tmp_path / "alone"
    shutil.copytree(root / new, alone / new, ignore=shutil.ignore_patterns("deletion-mark.json"))
    ours = run_cli("bucket", "dump", "--bucket", str(root), "--id", new)
    assert ours.exit_code == 0 and promtool_dump(alone) == ours.stdout
