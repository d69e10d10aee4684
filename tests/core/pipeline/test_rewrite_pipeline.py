"""The rewrite pipeline's modifiers (relabel, delete, merge of equal series) do not depend on where batches
end: runs of equal label sets that straddle batches, reordered series and tombstones give the same block."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np

from thanostools.core.labels import Labels, from_dict
from thanostools.core.pipeline.read import each_series
from thanostools.core.relabel import load_deletion_requests, load_relabel_configs
from thanostools.core.rewrite import RewriteSpec, rewrite_block
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.tombstones import encode_tombstones
from thanostools.core.tsdb.writer import BlockWriter

HOUR = 3_600_000
START = 1_700_006_400_000
# "instance" goes, so up{a,i} for every i becomes one series; job z becomes job a, which moves those series
# before others in label order.
RELABEL = """
- action: labeldrop
  regex: instance
- source_labels: [job]
  regex: z
  target_label: job
  replacement: a
"""
DELETE = f"""
- matchers: '{{__name__="up", job="a"}}'
  intervals: [{{mint: {START + HOUR}, maxt: {START + 2 * HOUR}}}]
- matchers: '{{__name__="gone"}}'
"""


def data() -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    t = START + np.arange(0, 3 * HOUR, 15_000, dtype=np.int64)
    out = {}
    for i in range(4):
        for job in ("a", "b", "z"):
            out[from_dict({"__name__": "up", "job": job, "instance": str(i)})] = (t + 1000 * (i % 2),
                                                                                np.full(t.size, float(i)))
        out[from_dict({"__name__": "gone", "job": "b", "instance": str(i)})] = (t, np.ones(t.size))
    return out


def write_block(parent: Path) -> Path:
    w = BlockWriter(str(parent), min_time=START, max_time=START + 3 * HOUR, external_labels={"cluster": "eu1"})
    series = data()
    for lab in sorted(series):
        w.add_samples(lab, *series[lab])
    w.finish()
    path = Path(w.dir)
    block = Block.open_dir(str(path))
    stoned = [int(s.refs[0]) for s in each_series(block) if dict(s.labels.labels(0))["job"] in "ab"][::3]
    (path / "tombstones").write_bytes(encode_tombstones({r: [(START + 2 * HOUR, START + 2 * HOUR + 600_000)]
                                                         for r in stoned}))
    return path


def samples(path: str) -> dict[Labels, dict[int, float]]:
    out = {}
    for batch in Block.open_dir(path).select([]):
        for i in range(len(batch)):
            lab, t, v = batch.series(i)
            out[lab] = dict(zip(t.tolist(), v.view(np.float64).tolist(), strict=True))
    return out


def test_batch_boundaries_do_not_change_the_rewrite(tmp_path: Path) -> None:
    src = write_block(tmp_path / "src")
    spec = RewriteSpec(tuple(load_relabel_configs(RELABEL)), tuple(load_deletion_requests(DELETE)))
    results = [rewrite_block(Block.open_dir(str(src)), spec, str(tmp_path / f"out{n}"), batch_series=n)
               for n in (1, 2, 5, 2000)]
    first = results[0]
    assert first.path is not None and first.stats.series_merged == 13 and first.stats.series_deleted == 4
    for other in results[1:]:
        assert other.path is not None and other.stats == first.stats and other.changes == first.changes
        for name in ("index", "chunks/000001"):
            assert filecmp.cmp(Path(first.path) / name, Path(other.path) / name, shallow=False), name
    out = samples(first.path)
    assert sorted(out) == [from_dict({"__name__": "up", "job": j}) for j in ("a", "b")]
    # up{job="a"} merges instances 0..3 of jobs a and z: at a timestamp the series first in index order wins
    merged = out[from_dict({"__name__": "up", "job": "a"})]
    assert not any(START + HOUR <= t <= START + 2 * HOUR for t in merged)
    assert merged[START] == 0.0 and merged[START + 1000] == 1.0
