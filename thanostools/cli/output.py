"""Rendering rows of data as table / wide / json / ndjson / csv / tsv / yaml / ids on stdout."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
import yaml

Row = Mapping[str, Any]

TABLE_FORMATS = ("table", "wide", "json", "ndjson", "csv", "tsv", "yaml", "ids")


def output_option(choices: Sequence[str] = TABLE_FORMATS, default: str = "table") -> Callable[..., Any]:
    return click.option("-o", "--output", "output", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_cell(x) for x in v)
    if isinstance(v, dict):
        return ",".join(f"{k}={_cell(x)}" for k, x in v.items())
    return str(v)


def render_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Plain aligned columns (two spaces apart), stable for scripts and tests."""
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def write_rows(
    fmt: str,
    records: Sequence[Row],
    columns: Sequence[tuple[str, str]],
    *,
    wide_columns: Sequence[tuple[str, str]] = (),
    documents: Sequence[Any] | None = None,
    id_key: str = "ulid",
) -> None:
    """Write ``records`` in ``fmt``. ``columns`` are (header, key) for the table forms.

    ``documents`` (same length as records) are the structured objects for json/ndjson/yaml when they
    differ from the flat table records (e.g. a block's whole meta.json).
    """
    docs = list(documents) if documents is not None else [dict(r) for r in records]
    if fmt == "json":
        emit(json.dumps(docs, indent=2, default=str) + "\n")
    elif fmt == "ndjson":
        emit("".join(json.dumps(d, default=str) + "\n" for d in docs))
    elif fmt == "yaml":
        emit(yaml.safe_dump(docs, sort_keys=False, default_flow_style=False))
    elif fmt == "ids":
        emit("".join(f"{r[id_key]}\n" for r in records))
    elif fmt in ("csv", "tsv"):
        cols = [*columns, *wide_columns]
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        w.writerow([h for h, _ in cols])
        for r in records:
            w.writerow([_cell(r.get(k)) for _, k in cols])
        emit(buf.getvalue())
    else:
        cols = [*columns, *(wide_columns if fmt == "wide" else ())]
        emit(render_table([[_cell(r.get(k)) for _, k in cols] for r in records], [h for h, _ in cols]))
