"""``thanos-tools bucket …``: list, inspect, analyze, dump, import, generate, upload, download."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.options import (
    TIME,
    bucket_options,
    open_workspace,
    parse_label_args,
    report_broken_blocks,
    time_range_options,
)
from thanostools.cli.output import TABLE_FORMATS, emit, output_option, render_table, write_rows
from thanostools.core.constants import resolution_name
from thanostools.core.errors import ConfigError, ThanosToolsError
from thanostools.core.inspect import BlockFilter, BlockInfo, human_bytes, parse_label_selectors, parse_resolution
from thanostools.core.timeutil import format_time_ms, go_duration, human_duration, parse_duration_ms
from thanostools.core.tsdb.meta import BlockMeta

if TYPE_CHECKING:
    from thanostools.core.workspace import BucketWorkspace


@click.group()
def bucket() -> None:
    """Inspect and manage TSDB blocks in a bucket (local directory or object storage)."""


def _filter_options(func: Any) -> Any:
    func = click.option("--exclude-delete", is_flag=True, help="Hide blocks marked for deletion.")(func)
    func = click.option("--resolution", metavar="RES", help="Only blocks of this resolution: raw, 5m or 1h.")(func)
    func = click.option("--selector", "selectors", multiple=True, metavar="SEL",
                        help="External label selector k=v, k!=v, k=~re, k!~re (repeatable).")(func)
    return time_range_options(func)


def _block_filter(kw: dict[str, Any]) -> BlockFilter:
    res = kw.pop("resolution", None)
    return BlockFilter(
        min_time=kw.pop("min_time", None), max_time=kw.pop("max_time", None),
        selectors=tuple(parse_label_selectors(kw.pop("selectors", ()))),
        resolution=parse_resolution(res) if res else None, exclude_deleted=kw.pop("exclude_delete", False),
    )


def _labels_text(info: BlockInfo) -> str:
    return ",".join(f"{k}={v}" for k, v in info.meta.external_labels)


def _ls_record(info: BlockInfo) -> dict[str, Any]:
    m = info.meta
    return {
        "ulid": m.ulid, "from": format_time_ms(m.min_time), "until": format_time_ms(m.max_time),
        "range": human_duration(m.max_time - m.min_time), "level": m.level,
        "resolution": resolution_name(m.resolution), "series": m.stats.num_series,
        "samples": m.stats.num_samples, "chunks": m.stats.num_chunks, "size": human_bytes(info.size_bytes),
        "size_bytes": info.size_bytes, "labels": _labels_text(info), "marks": ",".join(info.marks),
        "source": m.thanos.source if m.thanos else "", "sources": len(m.sources),
    }


def _ls_document(info: BlockInfo) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(info.meta.to_json())
    doc["size_bytes"] = info.size_bytes
    doc["marks"] = info.marks
    return doc


@bucket.command("ls")
@bucket_options
@_filter_options
@output_option(("table", "wide", "json", "ndjson", "csv", "yaml", "ids"))
def ls_cmd(output: str, **kw: Any) -> None:
    """List the blocks of the bucket (reads only meta.json files and a listing)."""
    flt = _block_filter(kw)
    workspace = open_workspace(kw)
    infos = workspace.blocks(flt)
    write_rows(
        output, [_ls_record(i) for i in infos],
        [("ULID", "ulid"), ("FROM", "from"), ("UNTIL", "until"), ("RANGE", "range"), ("LEVEL", "level"),
         ("RES", "resolution"), ("SERIES", "series"), ("SAMPLES", "samples"), ("SIZE", "size"),
         ("LABELS", "labels"), ("MARKS", "marks")],
        wide_columns=[("CHUNKS", "chunks"), ("SOURCE", "source"), ("SOURCES", "sources"),
                      ("SIZE-BYTES", "size_bytes")],
        documents=[_ls_document(i) for i in infos],
    )
    report_broken_blocks(workspace)


INSPECT_COLUMNS = [
    ("ULID", "ulid"), ("FROM", "from"), ("UNTIL", "until"), ("RANGE", "range"), ("UNTIL-DOWN", "until_down"),
    ("#SERIES", "series"), ("#SAMPLES", "samples"), ("#CHUNKS", "chunks"), ("COMP-LEVEL", "level"),
    ("COMP-FAILED", "failed"), ("LABELS", "labels"), ("RESOLUTION", "resolution"), ("SOURCE", "source"),
    ("SIZE", "size"), ("MARKS", "marks"),
]
SORT_KEYS = {h.lstrip("#").lower(): k for h, k in INSPECT_COLUMNS}


def _until_down(info: BlockInfo) -> str:
    span = info.meta.max_time - info.meta.min_time
    res = info.meta.resolution
    if res == 0:
        return go_duration(40 * 3_600_000 - span)
    if res == 300_000:
        return go_duration(10 * 86_400_000 - span)
    return "-"


def _inspect_record(info: BlockInfo, *, pretty: bool) -> dict[str, Any]:
    m = info.meta

    def num(n: int) -> str | int:
        return f"{n:,}" if pretty else n

    return {
        "ulid": m.ulid, "from": format_time_ms(m.min_time), "until": format_time_ms(m.max_time),
        "range": go_duration(m.max_time - m.min_time), "until_down": _until_down(info),
        "series": num(m.stats.num_series), "samples": num(m.stats.num_samples), "chunks": num(m.stats.num_chunks),
        "level": m.level, "failed": m.failed, "labels": _labels_text(info),
        "resolution": go_duration(m.resolution), "source": m.thanos.source if m.thanos else "",
        "size": human_bytes(info.size_bytes) if pretty else info.size_bytes, "marks": ",".join(info.marks),
        "_sort": {"ulid": m.ulid, "from": m.min_time, "until": m.max_time, "range": m.max_time - m.min_time,
                  "until_down": m.max_time - m.min_time, "series": m.stats.num_series,
                  "samples": m.stats.num_samples, "chunks": m.stats.num_chunks, "level": m.level,
                  "failed": m.failed, "labels": _labels_text(info), "resolution": m.resolution,
                  "source": m.thanos.source if m.thanos else "", "size": info.size_bytes,
                  "marks": ",".join(info.marks)},
    }


@bucket.command("inspect")
@bucket_options
@_filter_options
@click.option("--id", "block_id", metavar="ULID", help="Show one block in full: meta, files with sizes, marks.")
@click.option("--sort-by", "sort_by", multiple=True, metavar="COLUMN",
              help=f"Sort by these columns (repeatable): {', '.join(SORT_KEYS)}. Default: from, ulid.")
@output_option(("table", "json", "csv", "tsv"))
def inspect_cmd(output: str, block_id: str | None, sort_by: tuple[str, ...], **kw: Any) -> None:
    """Thanos-style table of blocks, or one block's full detail with --id."""
    flt = _block_filter(kw)
    workspace = open_workspace(kw)
    if block_id:
        _inspect_one(workspace.block_info(block_id), workspace, output)
        return
    keys = [SORT_KEYS.get(k.lower().lstrip("#")) for k in sort_by]
    if None in keys:
        raise click.BadParameter(f"unknown column in {sort_by}; use {', '.join(SORT_KEYS)}", param_hint="--sort-by")
    infos = workspace.blocks(flt)
    records = [_inspect_record(i, pretty=output == "table") for i in infos]
    order = [k for k in keys if k] or ["from", "ulid"]
    records.sort(key=lambda r: tuple(r["_sort"][k] for k in order))
    docs = [{k: v for k, v in _inspect_record(i, pretty=False).items() if k != "_sort"} for i in infos]
    by_id = {d["ulid"]: d for d in docs}
    write_rows(output, records, INSPECT_COLUMNS, documents=[by_id[r["ulid"]] for r in records])
    report_broken_blocks(workspace)


def _inspect_one(info: BlockInfo, workspace: Any, output: str) -> None:
    markers = workspace.markers(info.ulid)
    marks = {}
    for name in ("deletion", "no_compact", "no_downsample"):
        mk = getattr(markers, name)
        if mk is not None:
            marks[name.replace("_", "-")] = mk.to_dict()
    for fname, err in markers.broken.items():
        marks[fname] = {"error": str(err)}
    doc = {"meta": json.loads(info.meta.to_json()), "files": dict(sorted(info.files.items())),
           "size_bytes": info.size_bytes, "marks": marks}
    if output == "json":
        emit(json.dumps(doc, indent=2) + "\n")
        return
    if output in ("csv", "tsv"):
        write_rows(output, [{"file": f, "size_bytes": s} for f, s in sorted(info.files.items())],
                   [("FILE", "file"), ("SIZE_BYTES", "size_bytes")])
        return
    rec = _inspect_record(info, pretty=True)
    rows = [[h, str(rec[k])] for h, k in INSPECT_COLUMNS if k != "marks"]
    rows += [["SOURCES", ",".join(info.meta.sources)]]
    rows += [["PARENTS", ",".join(p.ulid for p in info.meta.parents)]] if info.meta.parents else []
    emit(render_table(rows, ["FIELD", "VALUE"]))
    emit("\n" + render_table([[f, f"{s:,}"] for f, s in sorted(info.files.items())], ["FILE", "SIZE"]))
    if marks:
        emit("\n" + render_table([[k, json.dumps(v)] for k, v in marks.items()], ["MARK", "CONTENT"]))


def _match_option(func: Any) -> Any:
    return click.option("--match", "matches", multiple=True, metavar="SELECTOR",
                        help='Series selector, e.g. \'up{job="api"}\' (repeatable: series matching any).')(func)


def _parse_matches(matches: tuple[str, ...]) -> list[list[Any]]:
    if not matches:
        return []
    from thanostools.core.promql.parser.parse import parse_selector

    return [parse_selector(m) for m in matches]


@bucket.command("analyze")
@bucket_options
@click.option("--id", "block_id", metavar="ULID", help="Block to analyze (default: the newest).")
@click.option("--limit", default=20, show_default=True, help="How many items to show in each list.")
@click.option("--extended", is_flag=True, help="Also analyze chunk fullness and sizes (reads every chunk).")
@_match_option
@output_option(("text", "json"), default="text")
def analyze_cmd(output: str, block_id: str | None, limit: int, extended: bool, matches: tuple[str, ...],
                **kw: Any) -> None:
    """Churn, cardinality and chunk statistics, as `promtool tsdb analyze` reports them."""
    workspace = open_workspace(kw)
    selectors = _parse_matches(matches)
    if len(selectors) > 1:
        raise ConfigError("analyze takes one --match selector")
    report = workspace.analyze(block_id, matchers=selectors[0] if selectors else (), extended=extended, limit=limit)
    if output == "json":
        emit(json.dumps(report.to_dict(limit), indent=2) + "\n")
    else:
        from thanostools.core.render.analyze_text import render_analyze

        emit(render_analyze(report, limit))
    if not block_id:  # "the newest block" is only known when every meta.json could be read
        report_broken_blocks(workspace)


AGGREGATES = ("count", "sum", "min", "max", "counter")
DUMP_BATCH_SERIES = 4000  # series decoded at once: bounds memory for blocks of any size


@bucket.command("dump")
@bucket_options
@click.option("--id", "block_ids", multiple=True, metavar="ULID", help="Blocks to dump (repeatable; default all).")
@time_range_options
@_match_option
@click.option("--aggregate", type=click.Choice(AGGREGATES), default="count", show_default=True,
              help="Which aggregate to dump from downsampled blocks.")
@output_option(("prom", "openmetrics", "json", "csv"), default="prom")
def dump_cmd(output: str, block_ids: tuple[str, ...], min_time: int | None, max_time: int | None,
             matches: tuple[str, ...], aggregate: str, **kw: Any) -> None:
    """Print samples: `-o prom` prints exactly what `promtool tsdb dump` prints."""
    from thanostools.core.chunkenc.aggr import Aggr
    from thanostools.core.render.dumpfmt import write_dump
    from thanostools.core.storage import union_selects

    workspace = open_workspace(kw)
    selectors = _parse_matches(matches) or [[]]
    mint = min_time if min_time is not None else -(2**63)
    maxt = max_time if max_time is not None else 2**63 - 1
    agg = Aggr[aggregate.upper()]
    batches = union_selects([workspace.select(block_ids, sel, mint, maxt, aggregate=agg, batch_size=DUMP_BATCH_SERIES,
                                              histograms=True)
                             for sel in selectors])
    out = sys.stdout
    write_dump(batches, output, out.write)
    out.flush()
    if not block_ids:
        report_broken_blocks(workspace)


@bucket.command("import")
@bucket_options
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["auto", "openmetrics", "prometheus", "json"]), default="auto",
              show_default=True, help="Input format (auto: `bucket dump -o json` output when it starts with [, "
              "OpenMetrics when it ends with # EOF). json imports native histograms too.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="External label for the blocks (repeatable).")
@click.option("--block-duration", default="2h", show_default=True, metavar="DURATION",
              help="Block length; blocks are aligned to multiples of it.")
@click.option("--tmp-dir", metavar="DIR", help="Where blocks are built before upload (default: system temp).")
@output_option(("table", "json", "ids"))
def import_cmd(files: tuple[str, ...], fmt: str, labels: tuple[str, ...], block_duration: str,
               tmp_dir: str | None, output: str, **kw: Any) -> None:
    """Import OpenMetrics / Prometheus text files (with timestamps) or `bucket dump -o json` output as blocks."""
    ext = parse_label_args(labels)
    duration = parse_duration_ms(block_duration)
    workspace = open_workspace(kw)
    metas = workspace.import_files(list(files), fmt=fmt, external_labels=ext, block_duration=duration,
                                tmp_dir=tmp_dir)
    _print_written(metas, output)


def _print_written(metas: list[Any], output: str) -> None:
    write_rows(
        output,
        [{"ulid": m.ulid, "from": format_time_ms(m.min_time), "until": format_time_ms(m.max_time),
          "series": m.stats.num_series, "samples": m.stats.num_samples, "chunks": m.stats.num_chunks} for m in metas],
        [("ULID", "ulid"), ("FROM", "from"), ("UNTIL", "until"), ("SERIES", "series"), ("SAMPLES", "samples"),
         ("CHUNKS", "chunks")],
        documents=[json.loads(m.to_json()) for m in metas],
    )


@bucket.command("generate")
@bucket_options
@click.option("--series", default=1000, show_default=True, help="Approximate number of series per replica.")
@click.option("--duration", default="2h", show_default=True, metavar="DURATION", help="Time span to generate.")
@click.option("--start", type=TIME, default=None, metavar="TIME",
              help="Start time (default: the block-aligned start, `--duration` before now).")
@click.option("--scrape-interval", default="15s", show_default=True, metavar="DURATION")
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed gives the same data.")
@click.option("--replicas", default=1, show_default=True, help="HA replicas (external label `replica`).")
@click.option("--churn", default=0.1, show_default=True, help="Fraction of targets that start late or end early.")
@click.option("--native-histograms", is_flag=True,
              help="Latency histograms as native (exponential, schema 3) histograms instead of classic ones.")
@click.option("--nhcb", is_flag=True,
              help="Latency histograms as native histograms with custom buckets (schema -53) on the classic bounds, "
                   "as Prometheus 3.x converts classic histograms (implies --native-histograms).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="External label for the blocks (repeatable).")
@click.option("--block-duration", default="2h", show_default=True, metavar="DURATION")
@output_option(("table", "json", "ids"))
def generate_cmd(series: int, duration: str, start: int | None, scrape_interval: str, seed: int, replicas: int,
                 churn: float, native_histograms: bool, nhcb: bool, labels: tuple[str, ...], block_duration: str,
                 output: str,
                 **kw: Any) -> None:
    """Generate deterministic, realistic synthetic data straight into blocks."""
    from thanostools.core.ingest.generate import GenerateSpec
    from thanostools.core.timeutil import now_ms

    dur = parse_duration_ms(duration)
    bd = parse_duration_ms(block_duration)
    if series < 1 or replicas < 1 or dur <= 0 or not 0 <= churn <= 1:
        raise ConfigError("--series, --replicas and --duration must be positive, --churn within 0..1")
    start_ms = start if start is not None else (now_ms() - dur) // bd * bd
    spec = GenerateSpec(series=series, start_ms=start_ms, duration_ms=dur,
                        scrape_interval_ms=parse_duration_ms(scrape_interval), seed=seed, replicas=replicas,
                        churn=churn, native_histograms=native_histograms or nhcb, custom_buckets=nhcb)
    workspace = open_workspace(kw)
    metas = workspace.generate(spec, external_labels=parse_label_args(labels), block_duration=bd)
    _print_written(metas, output)


@bucket.command("upload")
@bucket_options
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--hash", "hash_files", is_flag=True, help="Record SHA256 hashes of the files in meta.json.")
@output_option(("table", "json", "ids"))
def upload_cmd(directory: str, hash_files: bool, output: str, **kw: Any) -> None:
    """Upload a block directory (or a directory of blocks); meta.json goes last.

    Blocks the bucket already holds complete (meta.json there, same files) are skipped with a note, so an
    interrupted upload of many blocks can simply be run again; a block that fails does not stop the others,
    and the command fails at the end if any did.
    """
    from thanostools.core.ulid import is_ulid

    workspace = open_workspace(kw)
    if os.path.exists(os.path.join(directory, "meta.json")):
        dirs = [directory]
    else:
        dirs = sorted(os.path.join(directory, d) for d in os.listdir(directory)
                      if is_ulid(d) and os.path.exists(os.path.join(directory, d, "meta.json")))
    if not dirs:
        raise ConfigError(f"{directory}: no block directories (with meta.json) found")
    written: list[BlockMeta] = []
    failed = 0
    for d in dirs:
        try:
            meta = _upload_one(workspace, d, hash_files)
        except ThanosToolsError as exc:
            click.echo(f"error: {d}: {exc}", err=True)
            failed += 1
            continue
        if meta is not None:
            written.append(meta)
    _print_written(written, output)
    if failed:
        raise ThanosToolsError(f"{failed} of {len(dirs)} block(s) failed to upload")


def _upload_one(workspace: BucketWorkspace, path: str, hash_files: bool) -> BlockMeta | None:
    """Upload one block; None (with a note) when the bucket already has it complete, as a resumed upload finds."""
    from thanostools.core.blockio import upload_state

    state = upload_state(path, workspace.bucket)
    if state == "complete":
        click.echo(f"note: {path}: already in the bucket with the same files; skipped", err=True)
        return None
    if state == "different":
        raise ThanosToolsError(f"the block is already in {workspace.bucket.url} with different files; "
                               "delete it there first to replace it")
    return workspace.upload(path, hash_files=hash_files)


@bucket.command("download")
@bucket_options
@click.option("--id", "block_ids", multiple=True, required=True, metavar="ULID", help="Block to download.")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing local copy.")
def download_cmd(block_ids: tuple[str, ...], directory: str, overwrite: bool, **kw: Any) -> None:
    """Download blocks into DIRECTORY/<ULID> (meta.json first, complete or not at all)."""
    workspace = open_workspace(kw)
    os.makedirs(directory, exist_ok=True)
    for ulid in block_ids:
        emit(workspace.download(ulid, directory, overwrite=overwrite) + "\n")


__all__ = ["TABLE_FORMATS", "bucket"]


def _register_command_modules() -> None:
    """Commands that live in their own ``cli/bucket_<name>.py`` module (each has ``register(group)``)."""
    import importlib
    import pkgutil

    import thanostools.cli as cli_pkg

    for mod in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("bucket_"):
            importlib.import_module(f"thanostools.cli.{mod.name}").register(bucket)


_register_command_modules()
