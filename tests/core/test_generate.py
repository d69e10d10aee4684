from __future__ import annotations

import io
import math
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import ConfigError
from thanostools.core.ingest.generate import (
    GenerateSpec,
    generate_series,
    render_openmetrics,
    series_count,
)
from thanostools.core.ingest.textparse import parse_exposition
from thanostools.core.labels import Labels, get, without

SMALL = GenerateSpec(series=600, duration_ms=3600 * 1000, churn=0.3, seed=3)
Series = list[tuple[Labels, np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def small() -> Series:
    return list(generate_series(SMALL))


def floats(v: np.ndarray) -> np.ndarray:
    return v.view(np.float64)


def live(v: np.ndarray) -> np.ndarray:
    return floats(v[v != np.uint64(STALE_NAN_BITS)])


def test_deterministic_for_a_seed(small: Series) -> None:
    again = list(generate_series(SMALL))
    assert [s[0] for s in again] == [s[0] for s in small]
    for (_, t1, v1), (_, t2, v2) in zip(small, again, strict=True):
        assert np.array_equal(t1, t2) and np.array_equal(v1, v2)


def test_other_seed_other_data(small: Series) -> None:
    other = {labels: v for labels, _, v in generate_series(GenerateSpec(series=600, duration_ms=3600 * 1000,
                                                                         churn=0.3, seed=4))}
    different = sum(not np.array_equal(v, other[labels]) for labels, _, v in small if labels in other)
    assert different > len(small) // 2


def test_sorted_unique_label_sets(small: Series) -> None:
    labels = [s[0] for s in small]
    assert labels == sorted(labels)
    assert len(set(labels)) == len(labels)
    for ls in labels:
        assert list(ls) == sorted(ls) and all(v for _, v in ls)


@pytest.mark.parametrize("target", [100, 1000, 5000, 25000])
def test_series_count_close_to_target(target: int) -> None:
    spec = GenerateSpec(series=target, duration_ms=60_000)
    n = sum(1 for _ in generate_series(spec))
    assert n == series_count(spec)
    assert abs(n - target) <= 0.1 * target


def test_realistic_families(small: Series) -> None:
    names = {get(labels, "__name__") for labels, _, _ in small}
    for name in (
        "http_requests_total", "process_cpu_seconds_total", "node_memory_Active_bytes", "go_goroutines", "up",
        "http_request_duration_seconds_bucket", "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    ):
        assert name in names
    assert {get(labels, "job") for labels, _, _ in small} == {"api", "db", "cache", "node"}
    for labels, _, v in small:
        values = live(v)
        assert not np.isnan(values).any() and np.isfinite(values).all()
        if get(labels, "__name__") == "up":
            assert (values == 1.0).all()


def test_timestamps_strictly_increasing_and_in_range(small: Series) -> None:
    end = SMALL.start_ms + SMALL.duration_ms
    for _, t, v in small:
        assert t.dtype == np.int64 and v.dtype == np.uint64 and t.size == v.size > 0
        assert (np.diff(t) > 0).all()
        assert t[0] >= SMALL.start_ms and t[-1] < end


def test_series_of_a_target_share_timestamps(small: Series) -> None:
    by_target: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for labels, t, _ in small:
        by_target[(get(labels, "job"), get(labels, "instance"))].append(t)
    for stamps in by_target.values():
        assert all(np.array_equal(stamps[0], t) for t in stamps)


def test_counters_only_drop_at_resets(small: Series) -> None:
    resets: dict[str, set[int]] = defaultdict(set)
    counters = 0
    for labels, t, v in small:
        if not get(labels, "__name__").endswith(("_total", "_bucket", "_count", "_sum")):
            continue
        counters += 1
        values = live(v)
        drops = np.flatnonzero(np.diff(values) < 0)
        assert drops.size <= 1, labels
        resets[get(labels, "instance")].update(t[drops + 1].tolist())
    assert counters > 100
    assert any(resets.values()), "some target should restart"
    # a restart resets every counter of the target at the same scrape
    assert all(len(times) <= 1 for times in resets.values())


def test_histograms_consistent(small: Series) -> None:
    buckets: dict[Labels, list[tuple[float, np.ndarray]]] = defaultdict(list)
    counts: dict[Labels, np.ndarray] = {}
    sums: dict[Labels, np.ndarray] = {}
    for labels, _, v in small:
        name = get(labels, "__name__")
        if name.endswith("_bucket"):
            family = (("__name__", name.removesuffix("_bucket")), *without(labels, ["__name__", "le"]))
            buckets[tuple(sorted(family))].append((float(get(labels, "le")), live(v)))
        elif name.endswith(("_count", "_sum")) and "duration" in name:
            family = (("__name__", name.rsplit("_", 1)[0]), *without(labels, ["__name__"]))
            (counts if name.endswith("_count") else sums)[tuple(sorted(family))] = live(v)
    assert buckets
    for family, parts in buckets.items():
        parts.sort(key=lambda p: p[0])
        assert parts[-1][0] == math.inf
        stacked = np.stack([values for _, values in parts])
        assert (np.diff(stacked, axis=0) >= 0).all(), family
        assert np.array_equal(stacked[-1], counts[family])
        assert (sums[family] >= 0).all()
        assert stacked[-1][-1] > 0


def test_churn_and_stale_markers(small: Series) -> None:
    full = SMALL.scrapes
    stale = [(labels, t, v) for labels, t, v in small if v[-1] == np.uint64(STALE_NAN_BITS)]
    late = [labels for labels, t, v in small if t.size < full and v[-1] != np.uint64(STALE_NAN_BITS)]
    assert stale and late
    for _, t, v in stale:
        assert t[-1] - t[-2] == SMALL.scrape_interval_ms
        assert (v[:-1] != np.uint64(STALE_NAN_BITS)).all()
        assert t.size - 1 < full
    churned = len(stale) + len(late)
    assert 0.1 * len(small) < churned < 0.6 * len(small)
    assert all(v[-1] != np.uint64(STALE_NAN_BITS) for _, _, v in generate_series(
        GenerateSpec(series=300, duration_ms=600_000, churn=0.0)))


def test_replicas_share_labels_but_not_timestamps() -> None:
    spec = GenerateSpec(series=300, duration_ms=600_000, replicas=2)
    a, b = list(generate_series(spec, 0)), list(generate_series(spec, 1))
    assert [s[0] for s in a] == [s[0] for s in b]
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    for (_, t1, _), (_, t2, _) in zip(a, b, strict=True):
        assert t1.size == t2.size and np.abs(t1 - t2).max() < spec.scrape_interval_ms
    with pytest.raises(ConfigError):
        list(generate_series(spec, 2))


def test_invalid_specs() -> None:
    for spec in (GenerateSpec(series=0), GenerateSpec(churn=1.5), GenerateSpec(scrape_interval_ms=0)):
        with pytest.raises(ConfigError):
            next(generate_series(spec))


def test_odd_intervals() -> None:
    spec = GenerateSpec(series=50, duration_ms=10_000, scrape_interval_ms=1, churn=0.5)
    for _, t, _ in generate_series(spec):
        assert (np.diff(t) > 0).all() and t[-1] < spec.start_ms + spec.duration_ms + 1


def test_render_openmetrics_round_trips(small: Series) -> None:
    out = io.BytesIO()
    render_openmetrics(small, out)
    text = out.getvalue()
    assert text.endswith(b"\n# EOF\n")
    parsed = parse_exposition(text, source="generated")
    assert parsed.series == [labels for labels, _, _ in small]
    assert len(parsed) == sum(int((v != np.uint64(STALE_NAN_BITS)).sum()) for _, _, v in small)
    starts = np.searchsorted(parsed.series_index, np.arange(len(parsed.series) + 1))
    for i, (_, t, v) in enumerate(small):
        keep = v != np.uint64(STALE_NAN_BITS)
        lo, hi = starts[i], starts[i + 1]
        assert np.array_equal(parsed.t[lo:hi], t[keep])
        assert np.array_equal(parsed.v[lo:hi], v[keep])


def test_render_timestamps_survive_promtool_truncation() -> None:
    # small timestamps where seconds*1000 in float64 lands just below the integer
    t = np.arange(0, 200_000, 7, dtype=np.int64)
    labels: Labels = (("__name__", "m"),)
    out = io.BytesIO()
    render_openmetrics([(labels, t, np.zeros(t.size, dtype=np.uint64))], out)
    assert np.array_equal(parse_exposition(out.getvalue()).t, t)


PROMTOOL = shutil.which("promtool")


@pytest.mark.promtool
@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_imports_rendered_data_exactly(tmp_path: Path) -> None:
    spec = GenerateSpec(series=150, duration_ms=1800 * 1000, churn=0.3, seed=11)
    series = list(generate_series(spec))
    path = tmp_path / "gen.om"
    with path.open("wb") as out:
        render_openmetrics(series, out)
    blocks = tmp_path / "blocks"
    subprocess.run([PROMTOOL or "promtool", "tsdb", "create-blocks-from", "openmetrics", str(path), str(blocks)],
                   check=True, capture_output=True)
    (blocks / "wal").mkdir(exist_ok=True)
    dump = subprocess.run([PROMTOOL or "promtool", "tsdb", "dump", str(blocks)], check=True,
                          capture_output=True, text=True).stdout.splitlines()
    expected: list[tuple[str, int, float]] = []
    for labels, t, v in series:
        keep = v != np.uint64(STALE_NAN_BITS)
        text = "{" + ", ".join(f'{n}="{value}"' for n, value in labels) + "}"
        expected.extend((text, ts, value) for ts, value in zip(t[keep].tolist(), floats(v[keep]).tolist(),
                                                               strict=True))
    got = [(s, int(ts), float(value)) for s, value, ts in (line.rsplit(" ", 2) for line in dump)]
    assert sorted(got) == sorted(expected)
