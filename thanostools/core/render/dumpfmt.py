"""Text renderings of samples: promtool ``tsdb dump`` lines, OpenMetrics, JSON and CSV.

These are data interchange formats (other tools parse them), so they live in the core next to
the parsers; the CLI only chooses one and writes the text out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from thanostools.core.goformat import format_g, go_labels_string, go_quote
from thanostools.core.labels import METRIC_NAME, Labels
from thanostools.core.series import SampleBatch

DUMP_FORMATS = ("prom", "openmetrics", "json", "csv")
FORMAT_BATCH_SAMPLES = 200_000  # text is built per sub-batch so memory stays bounded


def _value_strings(v: np.ndarray, fmt: Callable[[float], str]) -> list[str]:
    """Format values once per distinct value (series repeat values a lot)."""
    floats = v.view(np.float64)
    uniq, inverse = np.unique(v, return_inverse=True)
    if uniq.size < floats.size // 2:
        table = _format_many(uniq.view(np.float64), fmt)
        return [table[i] for i in inverse.tolist()]
    return _format_many(floats, fmt)


def _format_many(floats: np.ndarray, fmt: Callable[[float], str]) -> list[str]:
    if fmt is not format_g:
        return [fmt(x) for x in floats.tolist()]
    # Between 1e-4 and 1e6 Go's %g and Python's repr agree except for repr's trailing ".0".
    mag = np.abs(floats)
    plain = ((mag >= 1e-4) & (mag < 1e6)) | (floats == 0)
    if bool(plain.all()):
        return [r[:-2] if r.endswith(".0") else r for r in map(repr, floats.tolist())]
    out = [format_g(x) for x in floats.tolist()]
    idx = np.flatnonzero(plain)
    for i, r in zip(idx.tolist(), map(repr, floats[idx].tolist()), strict=True):
        out[i] = r[:-2] if r.endswith(".0") else r
    return out


def prom_lines(batch: SampleBatch) -> str:
    """``{labels} value timestamp_ms`` lines exactly as ``promtool tsdb dump`` prints them."""
    out: list[str] = []
    values = _value_strings(batch.v, format_g)
    ts = batch.t.tolist()
    offs = batch.offsets.tolist()
    for i, labels in enumerate(batch.labels):
        prefix = go_labels_string(labels) + " "
        a, b = offs[i], offs[i + 1]
        out.extend(f"{prefix}{values[j]} {ts[j]}\n" for j in range(a, b))
    return "".join(out)


def _om_value(x: float) -> str:
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    return repr(x)


def _om_series(labels: Labels) -> str:
    name = ""
    parts = []
    for n, v in labels:
        if n == METRIC_NAME:
            name = v
        else:
            parts.append(f"{n}={go_quote(v)}")
    return f"{name}{{{','.join(parts)}}}" if parts else name


def _om_ts(ms: int) -> str:
    sec, frac = divmod(ms, 1000)
    return f"{sec}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(sec)


def openmetrics_lines(batch: SampleBatch) -> str:
    """OpenMetrics sample lines (timestamps in seconds); the caller writes ``# EOF`` at the end."""
    out: list[str] = []
    values = _value_strings(batch.v, _om_value)
    ts = batch.t.tolist()
    offs = batch.offsets.tolist()
    for i, labels in enumerate(batch.labels):
        prefix = _om_series(labels) + " "
        out.extend(f"{prefix}{values[j]} {_om_ts(ts[j])}\n" for j in range(offs[i], offs[i + 1]))
    return "".join(out)


def json_documents(batch: SampleBatch) -> Iterator[dict[str, object]]:
    values = _value_strings(batch.v, format_g)
    ts = batch.t.tolist()
    offs = batch.offsets.tolist()
    for i, labels in enumerate(batch.labels):
        a, b = offs[i], offs[i + 1]
        yield {"labels": dict(labels), "samples": [[ts[j], values[j]] for j in range(a, b)]}


def csv_rows(batch: SampleBatch) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    values = _value_strings(batch.v, format_g)
    ts = batch.t.tolist()
    offs = batch.offsets.tolist()
    for i, labels in enumerate(batch.labels):
        series = go_labels_string(labels)
        w.writerows((series, ts[j], values[j]) for j in range(offs[i], offs[i + 1]))
    return buf.getvalue()


def write_dump(batches: Iterable[SampleBatch], fmt: str, write: Callable[[str], object]) -> int:
    """Render every batch in ``fmt`` through ``write``; returns the number of samples written."""
    n = 0
    first = True
    if fmt == "json":
        write("[")
    elif fmt == "csv":
        write("series,timestamp_ms,value\n")
    for batch in (part for whole in batches for part in whole.split(FORMAT_BATCH_SAMPLES)):
        n += int(batch.t.shape[0])
        if fmt == "prom":
            write(prom_lines(batch))
        elif fmt == "openmetrics":
            write(openmetrics_lines(batch))
        elif fmt == "csv":
            write(csv_rows(batch))
        else:
            for doc in json_documents(batch):
                write(("" if first else ",") + "\n" + json.dumps(doc))
                first = False
    if fmt == "json":
        write("\n]\n")
    elif fmt == "openmetrics":
        write("# EOF\n")
    return n
