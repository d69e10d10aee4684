"""Thanos downsampling: raw → 5m → 1h AggrChunk blocks (FORMATS.md §7).

Public API (the compactor calls the first two):

* ``downsample_block(block, target_resolution, out_dir) -> BlockMeta`` — one block into a new local block;
* ``plan_downsampling(metas, markers) -> [(meta, target_resolution)]`` — what needs downsampling now;
* ``downsample_bucket(engine, dry_run=…)`` — plan, downsample, upload and audit a whole bucket.
"""

from __future__ import annotations

from thanostools.core.constants import RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample.block import downsample_block, downsampled_meta
from thanostools.core.downsample.plan import PlannedStep, plan_downsampling, plan_passes
from thanostools.core.downsample.run import DownsampleReport, DownsampleResult, downsample_bucket, plan_bucket
from thanostools.core.downsample.series import AggrChunks, downsample_aggr, downsample_raw

__all__ = [
    "RESOLUTION_1H",
    "RESOLUTION_5M",
    "RESOLUTION_RAW",
    "AggrChunks",
    "DownsampleReport",
    "DownsampleResult",
    "PlannedStep",
    "downsample_aggr",
    "downsample_block",
    "downsample_bucket",
    "downsample_raw",
    "downsampled_meta",
    "plan_bucket",
    "plan_downsampling",
    "plan_passes",
]
