"""``bucket compact`` end to end: promtool blocks, a real prometheus, replicas, failures, S3."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.clihelp import make_openmetrics, run_cli
from tests.fixtures_prom import StartPrometheus, needs_promtool, promtool_create_blocks, promtool_dump
from thanostools.core.objstore.bucket import Bucket

H = 3_600_000
DAY = 86_400_000
# 8h of data starting at 20:00: the first two 2h blocks end before the third starts a new 6h and 8h
# range, so both the Thanos planner and Prometheus' own planner compact exactly those two.
START = 1_700_000_000_000 - 1_700_000_000_000 % DAY + 20 * H
NOW0 = "--consistency-delay=0s"


def metas(bucket: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads((p / "meta.json").read_text()) for p in sorted(bucket.iterdir())
            if (p / "meta.json").exists()}


def marked(bucket: Path, name: str = "deletion-mark.json") -> dict[str, dict[str, Any]]:
    return {p.name: json.loads((p / name).read_text()) for p in bucket.iterdir() if (p / name).exists()}


def live_copy(bucket: Path, dest: Path) -> Path:
    """The blocks a reader would still use: those not marked for deletion (markers left behind)."""
    dest.mkdir(parents=True)
    for ulid in metas(bucket):
        if not (bucket / ulid / "deletion-mark.json").exists():
            shutil.copytree(bucket / ulid, dest / ulid, ignore=shutil.ignore_patterns("*-mark.json"))
            (dest / ulid / "chunks").mkdir(exist_ok=True)
    return dest


def compact(bucket: Path | str, *args: str) -> Any:
    res = run_cli("bucket", "compact", "--bucket", str(bucket), "--no-dry-run", NOW0, "-o", "json", *args)
    return res


@pytest.fixture(scope="module")
def promtool_blocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compact")
    return promtool_create_blocks(make_openmetrics(hours=8, start_ms=START), root / "data")


@needs_promtool
def test_compacts_promtool_blocks(promtool_blocks: Path, tmp_path: Path,
                                  prometheus_server: StartPrometheus) -> None:
    bucket = tmp_path / "bucket"
    shutil.copytree(promtool_blocks, bucket)
    before = metas(bucket)
    assert len(before) == 4
    res = compact(bucket)
    assert res.exit_code == 0, res.stderr
    report = res.json()
    [done] = report["compactions"]
    inputs = sorted(before, key=lambda u: before[u]["minTime"])[:2]
    assert done["inputs"] == inputs and done["marked_for_deletion"] == inputs
    out = metas(bucket)[done["block"]]
    assert out["compaction"]["level"] == 2
    assert out["compaction"]["sources"] == sorted(inputs)
    assert out["compaction"]["parents"] == [{"ulid": u, "minTime": before[u]["minTime"],
                                             "maxTime": before[u]["maxTime"]} for u in inputs]
    assert (out["minTime"], out["maxTime"]) == (before[inputs[0]]["minTime"], before[inputs[1]]["maxTime"])
    assert out["thanos"]["source"] == "compactor" and out["thanos"]["labels"] is None
    assert out["stats"]["numSamples"] == sum(before[u]["stats"]["numSamples"] for u in inputs)
    assert {u: m["details"] for u, m in marked(bucket).items()} == {u: "source of compacted block" for u in inputs}
    assert not (bucket / done["block"] / "tombstones").exists()

    live = live_copy(bucket, tmp_path / "live")
    assert sorted(metas(live)) == sorted([done["block"], *(u for u in before if u not in inputs)])
    expected = promtool_dump(promtool_blocks)
    assert promtool_dump(live) == expected

    series = {line.split("} ")[0] for line in expected.splitlines()}
    server = prometheus_server(live, tmp_path)
    body = json.loads(server.get("/api/v1/series", **{"match[]": '{__name__=~".+"}', "start": str(START / 1000),
                                                      "end": str((START + 8 * H) / 1000)}))
    assert body["status"] == "success" and len(body["data"]) == len(series)
    at = (out["maxTime"] - 60_000) / 1000  # inside the compacted block
    body = json.loads(server.get("/api/v1/query", query='count({__name__=~".+"})', time=str(at)))
    in_window = {line.split("} ")[0] for line in expected.splitlines()
                 if at * 1000 - 300_000 < int(line.rsplit(" ", 1)[1]) <= at * 1000}
    assert body["data"]["result"][0]["value"][1] == str(len(in_window))

    again = compact(bucket)  # nothing left to do
    assert again.exit_code == 0 and again.json()["compactions"] == []


@pytest.mark.slow
@needs_promtool
def test_same_result_as_a_prometheus_server(promtool_blocks: Path, tmp_path: Path,
                                            prometheus_server: StartPrometheus) -> None:
    theirs = tmp_path / "prometheus"
    shutil.copytree(promtool_blocks, theirs)
    server = prometheus_server(theirs, tmp_path)
    deadline = time.time() + 240  # Prometheus compacts a minute after start
    while not _compacted_by_prometheus(theirs):
        assert time.time() < deadline, "prometheus did not compact its blocks"
        time.sleep(0.5)
    server.stop()
    ours = tmp_path / "ours"
    shutil.copytree(promtool_blocks, ours)
    assert compact(ours).exit_code == 0
    live = live_copy(ours, tmp_path / "live")
    assert promtool_dump(live) == promtool_dump(theirs)
    [their_block] = [m for m in metas(theirs).values() if m["compaction"]["level"] == 2]
    [our_block] = [m for m in metas(live).values() if m["compaction"]["level"] == 2]
    for key in ("minTime", "maxTime", "stats"):
        assert our_block[key] == their_block[key]
    assert our_block["compaction"]["sources"] == their_block["compaction"]["sources"]
    assert our_block["compaction"]["parents"] == their_block["compaction"]["parents"]


def _compacted_by_prometheus(data: Path) -> bool:
    found = metas(data)
    busy = any(".tmp" in p.name for p in data.iterdir())
    return not busy and len(found) == 3 and any(m["compaction"]["level"] == 2 for m in found.values())


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    assert run_cli("bucket", "generate", "--bucket", str(bucket), "--series", "30", "--duration", "24h",
                   "--start", str(START - 20 * H), "--label", "cluster=a").exit_code == 0
    listing = sorted(str(p) for p in bucket.rglob("*"))
    res = run_cli("bucket", "compact", "--bucket", str(bucket), "--dry-run", NOW0, "-o", "json")
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert [len(p["blocks"]) for p in doc["plans"]] == [4, 4]
    assert [p["range_ms"] for p in doc["plans"]] == [8 * H, 8 * H]
    assert {u["reason"] for u in doc["unplanned"]} == {"range-incomplete", "newest-block"}
    assert sorted(str(p) for p in bucket.rglob("*")) == listing
    table = run_cli("bucket", "compact", "--bucket", str(bucket), "--plan", NOW0)
    assert table.exit_code == 0 and 'raw {cluster="a"}' in table.stdout and "NOT-PLANNED" in table.stdout
    young = run_cli("bucket", "compact", "--bucket", str(bucket), "--plan", "-o", "json")
    assert {u["reason"] for u in young.json()["unplanned"]} == {"too-young"}


@needs_promtool
def test_overlapping_blocks_halt_or_merge_vertically(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    promtool_create_blocks(make_openmetrics(hours=3, start_ms=START, seed=3), bucket)
    promtool_create_blocks(make_openmetrics(hours=3, start_ms=START + 7_500, seed=3), tmp_path / "b")
    for p in (tmp_path / "b").iterdir():
        shutil.move(str(p), bucket / p.name)
    expected = promtool_dump(bucket)
    before = sorted(metas(bucket))
    halted = compact(bucket)
    assert halted.exit_code == 1
    assert "overlapping blocks" in halted.stderr and "--compact.enable-vertical-compaction" in halted.stderr
    assert sorted(metas(bucket)) == before and marked(bucket) == {}
    res = compact(bucket, "--compact.enable-vertical-compaction")
    assert res.exit_code == 0, res.stderr
    kinds = [c["kind"] for c in res.json()["compactions"]]
    assert kinds == ["vertical", "vertical"]
    live = live_copy(bucket, tmp_path / "live")
    assert len(metas(live)) == 2
    assert promtool_dump(live) == expected


def test_replicas_are_deduplicated(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    assert run_cli("bucket", "generate", "--bucket", str(bucket), "--series", "40", "--duration", "4h",
                   "--start", str(START), "--label", "cluster=x", "--replicas", "2").exit_code == 0
    union = run_cli("bucket", "dump", "--bucket", str(bucket)).stdout
    chain_bucket = tmp_path / "chain"
    shutil.copytree(bucket, chain_bucket)
    res = compact(chain_bucket, "--dedup.replica-label", "replica")
    assert res.exit_code == 0, res.stderr
    outputs = [metas(chain_bucket)[c["block"]] for c in res.json()["compactions"]]
    assert len(outputs) == 2 and all(m["thanos"]["labels"] == {"cluster": "x"} for m in outputs)
    assert all(len(m["compaction"]["sources"]) == 2 for m in outputs)
    assert run_cli("bucket", "dump", "--bucket", str(live_copy(chain_bucket, tmp_path / "l1"))).stdout == union
    res = compact(bucket, "--dedup.replica-label", "replica", "--dedup.func", "penalty")
    assert res.exit_code == 0, res.stderr
    deduped = run_cli("bucket", "dump", "--bucket", str(live_copy(bucket, tmp_path / "l2"))).stdout
    assert 0.4 < len(deduped) / len(union) < 0.6  # one replica's worth of samples


def test_failed_upload_leaves_no_block_without_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = _generated(tmp_path, hours=10)
    before = metas(bucket)
    real_put_file = Bucket.put_file

    def failing_put_file(self: Bucket, local_path: str, key: str, *, private: bool = False) -> None:
        if key.endswith("/index"):
            raise OSError("injected failure")
        real_put_file(self, local_path, key, private=private)

    monkeypatch.setattr(Bucket, "put_file", failing_put_file)
    res = compact(bucket)
    assert res.exit_code == 1 and "injected failure" in res.stderr
    assert metas(bucket) == before and marked(bucket) == {}
    assert sorted(p.name for p in bucket.iterdir()) == sorted(before)  # the partial upload was removed

    # A hard kill (no clean-up at all) leaves a prefix without meta.json: a partial upload, never a block.
    monkeypatch.setattr("thanostools.core.blockio._remove_partial_upload", lambda *a: True)
    res = compact(bucket)
    assert res.exit_code == 1
    leftovers = [p for p in bucket.iterdir() if p.name not in before]
    assert leftovers and all(not (p / "meta.json").exists() for p in leftovers)
    monkeypatch.setattr(Bucket, "put_file", real_put_file)
    res = compact(bucket)
    assert res.exit_code == 0 and len(res.json()["compactions"]) == 1
    for ulid, meta in metas(bucket).items():
        for f in meta.get("thanos", {}).get("files", []):
            assert (bucket / ulid / f["rel_path"]).exists()


def _generated(tmp_path: Path, *, hours: int, labels: tuple[str, ...] = ("cluster=a",), name: str = "bucket",
               start: int = START - 20 * H) -> Path:
    bucket = tmp_path / name
    args = [a for label in labels for a in ("--label", label)]
    assert run_cli("bucket", "generate", "--bucket", str(bucket), "--series", "20", "--duration", f"{hours}h",
                   "--start", str(start), *args).exit_code == 0
    return bucket


def _corrupt_chunks(block: Path) -> None:
    seg = block / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))


def test_unreadable_block_is_quarantined_and_the_rest_goes_on(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=10)
    _generated(tmp_path, hours=10, labels=("cluster=b",), name="b")
    for p in (tmp_path / "b").iterdir():
        shutil.move(str(p), bucket / p.name)
    group_a = sorted((u for u, m in metas(bucket).items() if m["thanos"]["labels"] == {"cluster": "a"}),
                     key=lambda u: metas(bucket)[u]["minTime"])
    bad = group_a[1]
    _corrupt_chunks(bucket / bad)
    res = compact(bucket)
    assert res.exit_code == 1
    doc = res.json()
    assert [q["block"] for q in doc["quarantined"]] == [bad]
    mark = json.loads((bucket / bad / "no-compact-mark.json").read_text())
    assert mark["reason"] == "manual" and "checksum" in mark["details"] and mark["id"] == bad
    assert f"quarantined block {bad}" in res.stderr
    done = [c["inputs"] for c in doc["compactions"]]
    assert group_a[2:4] in done  # group a goes on around the quarantined block
    assert any(set(c).isdisjoint(group_a) for c in done)  # and so does group b
    assert bad not in marked(bucket)


def test_halt_on_error_stops_without_marking(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=10)
    first = sorted(metas(bucket), key=lambda u: metas(bucket)[u]["minTime"])[0]
    _corrupt_chunks(bucket / first)
    res = compact(bucket, "--halt-on-error")
    assert res.exit_code == 1 and "halted" in res.stderr
    assert not (bucket / first / "no-compact-mark.json").exists()
    assert res.json()["compactions"] == []


def test_retention_after_compaction(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=10)
    res = compact(bucket, "--retention.resolution-raw", "1d")
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert len(doc["compactions"]) == 1
    assert set(marked(bucket)) == set(metas(bucket))  # the data is from 2023: everything expired
    expired = {a["block"] for a in doc["retention"] if a["status"] == "done"}
    assert expired == set(metas(bucket)) - set(doc["compactions"][0]["inputs"])


def test_downsampling_after_compaction(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=50, start=START - START % (2 * DAY))
    off = tmp_path / "off"
    shutil.copytree(bucket, off)
    res = compact(off, "--downsampling.disable")
    assert res.exit_code == 0 and res.json()["downsampled"] == []
    res = compact(bucket)
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert [c["max_time"] - c["min_time"] for c in doc["compactions"]] == [8 * H] * 6 + [48 * H]
    [down] = doc["downsampled"]
    two_days = metas(bucket)[doc["compactions"][-1]["block"]]
    meta = metas(bucket)[down]
    assert meta["thanos"]["downsample"]["resolution"] == 300_000
    assert meta["compaction"]["sources"] == two_days["compaction"]["sources"]


def test_wait_loops_until_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = _generated(tmp_path, hours=10)
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    with pytest.raises(SystemExit) as exc:
        from thanostools.cli.main import cli

        cli.main(["bucket", "compact", "--bucket", str(bucket), "--no-dry-run", NOW0, "--wait", "--wait-interval",
                  "1m"], prog_name="thanos-tools")
    # click turns Ctrl-C into Abort (exit 1) before the root group sees KeyboardInterrupt
    assert exc.value.code in (1, 130) and calls == [60.0, 60.0]


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    res = run_cli("bucket", "compact", "--bucket", str(tmp_path), "--compact.ranges", "8h,2h")
    assert res.exit_code == 2 and "increasing" in res.stderr and "Traceback" not in res.stderr


@needs_promtool
def test_compaction_in_s3(s3_bucket: Any, tmp_path: Path) -> None:
    local = _generated(tmp_path, hours=10)
    cfg = s3_bucket.write_config(tmp_path)
    assert run_cli("bucket", "upload", "--objstore.config-file", cfg, str(local)).exit_code == 0
    expected = promtool_dump(local)
    work = tmp_path / "work"
    res = run_cli("bucket", "compact", "--objstore.config-file", cfg, "--no-dry-run", NOW0, "--work-dir", str(work),
                  "-o", "json")
    assert res.exit_code == 0, res.stderr
    [done] = res.json()["compactions"]
    keys = s3_bucket.object_keys()
    assert f"{done['block']}/meta.json" in keys and f"{done['block']}/index" in keys
    assert all(f"{u}/deletion-mark.json" in keys for u in done["inputs"])
    assert list(work.iterdir()) == []  # the work directory is cleaned up
    down = tmp_path / "down"
    live = [u for u in {k.split("/")[0] for k in keys} if f"{u}/deletion-mark.json" not in keys]
    assert run_cli("bucket", "download", "--objstore.config-file", cfg, *[a for u in live for a in ("--id", u)],
                   str(down)).exit_code == 0
    assert promtool_dump(down) == expected


def test_index_size_limit_marks_the_largest_input(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=10)
    sizes = {u: (bucket / u / "index").stat().st_size for u in metas(bucket)}
    first_range = sorted(sizes, key=lambda u: metas(bucket)[u]["minTime"])[:4]  # the first 8h plan
    limit = sum(sizes[u] for u in first_range) - 1
    res = compact(bucket, "--downsampling.disable", "--compact.max-index-size", str(limit))
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    biggest = max(first_range, key=lambda u: (sizes[u], u))
    first = report["marked_no_compact"][0]
    assert (first["block"], first["reason"]) == (biggest, "index-size-exceeding")
    mark = marked(bucket, "no-compact-mark.json")[biggest]
    assert mark["reason"] == "index-size-exceeding" and str(limit) in mark["details"]
    for c in report["compactions"]:  # nothing built from the marked block, and no output beyond the limit
        assert biggest not in c["inputs"]
        assert sum(sizes[u] for u in c["inputs"]) <= limit


def test_bad_index_size_limit_is_refused(tmp_path: Path) -> None:
    res = compact(_generated(tmp_path, hours=4), "--compact.max-index-size", "lots")
    assert res.exit_code != 0 and "--compact.max-index-size" in res.stderr and "Traceback" not in res.stderr


def _age_deletion_marks(bucket: Path, hours: int) -> None:
    for ulid, mark in marked(bucket).items():
        mark["deletion_time"] -= hours * 3600
        (bucket / ulid / "deletion-mark.json").write_text(json.dumps(mark))


def test_blocks_marked_longer_than_the_delete_delay_are_deleted(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=10)
    first = compact(bucket, "--downsampling.disable")
    assert first.exit_code == 0, first.stderr
    inputs = [u for c in json.loads(first.stdout)["compactions"] for u in c["inputs"]]
    assert inputs and set(marked(bucket)) == set(inputs)  # marked, not deleted: too recent
    _age_deletion_marks(bucket, 49)
    (bucket / "01ARZ3NDEKTSV4RRFFQ69G5FAV").mkdir()  # a partial upload from 2016
    (bucket / "01ARZ3NDEKTSV4RRFFQ69G5FAV" / "index").write_bytes(b"x")
    kept = compact(bucket, "--downsampling.disable", "--cleanup.disable")
    assert kept.exit_code == 0 and set(marked(bucket)) == set(inputs)
    res = compact(bucket, "--downsampling.disable")
    assert res.exit_code == 0, res.stderr
    deleted = {a["block"] for a in json.loads(res.stdout)["cleanup"] if a["status"] == "done"}
    assert deleted == {*inputs, "01ARZ3NDEKTSV4RRFFQ69G5FAV"}
    assert not any((bucket / u).exists() for u in deleted)
    assert "deleted" in res.stderr


def test_delete_delay_keeps_recently_marked_blocks(tmp_path: Path) -> None:
    bucket = _generated(tmp_path, hours=10)
    assert compact(bucket, "--downsampling.disable").exit_code == 0
    _age_deletion_marks(bucket, 2)
    res = compact(bucket, "--downsampling.disable", "--delete-delay", "3h")
    assert res.exit_code == 0 and json.loads(res.stdout)["cleanup"] == [] and marked(bucket)
