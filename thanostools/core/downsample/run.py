"""``bucket downsample``: plan, downsample, upload (meta.json last) and audit, like the Thanos compactor's
downsampling passes (FORMATS.md §7.1)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from thanostools.core.audit import audit
from thanostools.core.blockio import download_block, upload_block, work_dir
from thanostools.core.catalog import CompactionLeftovers
from thanostools.core.downsample.block import downsample_block
from thanostools.core.downsample.plan import PlannedStep, plan_passes
from thanostools.core.errors import CorruptBlockError
from thanostools.core.groups import sort_by_time
from thanostools.core.inspect import BlockFilter
from thanostools.core.localfs import WorkDir
from thanostools.core.tsdb.block import Block, open_bucket_block
from thanostools.core.tsdb.meta import SOURCE_COMPACTOR, BlockMeta
from thanostools.core.workspace import BucketWorkspace


@dataclass
class DownsampleResult:
    source: str  # the existing block this data comes from
    input: str  # the block that was read (``source`` or a block made earlier in this run)
    target: int
    pass_no: int
    output: BlockMeta | None = None
    uploaded: bool = False
    seconds: float = 0.0
    input_samples: int = 0


@dataclass
class DownsampleReport:
    planned: list[PlannedStep] = field(default_factory=list)
    results: list[DownsampleResult] = field(default_factory=list)
    dry_run: bool = False


def plan_bucket(workspace: BucketWorkspace, *, block_filter: BlockFilter | None = None,
                passes: int = 2) -> list[PlannedStep]:
    """Downsampling steps for the bucket: coverage is judged on every block (but duplicates, blocks whose
    sources another block of their group holds, are ignored as Thanos does); ``block_filter`` then picks steps
    whose input (or the existing block it derives from) it accepts."""
    infos = workspace.scan(refresh=True).blocks
    # Leftovers of a compaction whose inputs are not deleted yet would be downsampled twice otherwise.
    kept = sort_by_time(b.meta for b in CompactionLeftovers().apply(infos))
    steps = plan_passes(kept, {b.ulid: b.marks for b in infos}, passes)
    if block_filter is None:
        return steps
    by_id = {b.ulid: b for b in infos}
    return [s for s in steps if any(u in by_id and block_filter.accepts(by_id[u]) for u in (s.meta.ulid, s.origin))]


def downsample_bucket(workspace: BucketWorkspace, *, dry_run: bool = False, block_filter: BlockFilter | None = None,
                      passes: int = 2, tmp_dir: str | None = None,
                      progress: Callable[[str], None] | None = None) -> DownsampleReport:
    """Run the planned downsampling. With ``dry_run`` every block is still computed (in a temporary
    directory, so the report has real figures) but nothing is uploaded."""
    report = DownsampleReport(planned=plan_bucket(workspace, block_filter=block_filter, passes=passes),
                              dry_run=dry_run)
    made: dict[str, str] = {}  # ULID of a planned input that this run produces -> its local directory
    with work_dir(workspace.bucket, "downsample", tmp_dir) as work:
        needed = {s.meta.ulid for s in report.planned if s.pass_no > 1}
        for step in report.planned:
            if progress:
                progress(f"downsampling {step.meta.ulid} to {step.target // 60_000}m")
            result, out_dir = _run_step(workspace, step, made, work, dry_run)
            report.results.append(result)
            stand_in = _stand_in_for(report.planned, step)
            if stand_in in needed:
                made[stand_in] = out_dir
            else:
                shutil.rmtree(out_dir, ignore_errors=True)
    return report


def _stand_in_for(planned: list[PlannedStep], step: PlannedStep) -> str:
    """ULID under which later passes refer to the block ``step`` makes (the next step from the same origin)."""
    later = [s for s in planned if s.origin == step.origin and s.pass_no == step.pass_no + 1]
    return later[0].meta.ulid if later else ""


def _run_step(workspace: BucketWorkspace, step: PlannedStep, made: dict[str, str], work: WorkDir,
              dry_run: bool) -> tuple[DownsampleResult, str]:
    started = time.monotonic()
    ulid = step.meta.ulid
    downloaded = ""
    if ulid in made:
        block = Block.open_dir(made[ulid])
    elif workspace.bucket.is_local:
        block = open_bucket_block(workspace.bucket, ulid)
    else:
        downloaded = download_block(workspace.bucket, ulid, os.path.join(work.path, "in"))
        block = Block.open_dir(downloaded)
    try:
        out_parent = os.path.join(work.path, "out")
        os.makedirs(out_parent, exist_ok=True)
        meta = downsample_block(block, step.target, out_parent)
        out_dir = os.path.join(out_parent, meta.ulid)
        _check_output(out_dir, meta)
    finally:
        if downloaded:
            shutil.rmtree(downloaded, ignore_errors=True)
    result = DownsampleResult(step.origin, ulid, step.target, step.pass_no, meta,
                              input_samples=block.meta.stats.num_samples)
    if not dry_run:
        result.output = upload_block(out_dir, workspace.bucket, source=SOURCE_COMPACTOR, private=True, work=work)
        result.uploaded = True
    audit("downsample", [ulid, meta.ulid], bucket=workspace.bucket.url, dry_run=dry_run,
          details={"resolution": step.target})
    result.seconds = time.monotonic() - started
    return result, out_dir


def _check_output(path: str, meta: BlockMeta) -> None:
    """Re-open the new block and check its index agrees with its meta before it goes anywhere."""
    block = Block.open_dir(path)
    series = int(block.index.all_postings().shape[0])
    if series != meta.stats.num_series:
        raise CorruptBlockError(f"downsampled block has {series} series, meta.json says {meta.stats.num_series}",
                                block=meta.ulid, file="index")
