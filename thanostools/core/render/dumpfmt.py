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

from thanostools.core.errors import UnsupportedError
from thanostools.core.goformat import format_g, go_labels_string, go_quote
from thanostools.core.histograms import HistogramBatch
from thanostools.core.labels import METRIC_NAME, Labels
from thanostools.core.render.histjson import histogram_string
from thanostools.core.series import KIND_FLOAT, SampleBatch

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


def _sample_strings(batch: SampleBatch) -> list[str]:
    """Each sample as ``promtool tsdb dump`` prints its value: Go ``%g`` for floats, ``Histogram.String()``
    (HISTOGRAMS.md H15.2) for native histograms."""
    values = _value_strings(batch.v, format_g)
    hist = batch.hist
    if hist is not None:
        for s in np.flatnonzero(hist.kind != KIND_FLOAT).tolist():
            values[s] = histogram_string(hist.batch_of(s), int(hist.row[s]))
    return values


def prom_lines(batch: SampleBatch) -> str:
    """``{labels} value timestamp_ms`` lines exactly as ``promtool tsdb dump`` prints them (3.x's form for
    native histograms: 2.42 prints none)."""
    out: list[str] = []
    values = _sample_strings(batch)
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
    if batch.hist is not None and bool((batch.hist.kind != KIND_FLOAT).any()):
        i = int(np.searchsorted(batch.offsets, int(np.flatnonzero(batch.hist.kind != KIND_FLOAT)[0]), "right")) - 1
        raise UnsupportedError(f"series {go_labels_string(batch.labels[i])} holds native histograms, which "
                               "OpenMetrics 1.0 text cannot express; use -o json (lossless) or -o prom")
    out: list[str] = []
    values = _value_strings(batch.v, _om_value)
    ts = batch.t.tolist()
    offs = batch.offsets.tolist()
    for i, labels in enumerate(batch.labels):
        prefix = _om_series(labels) + " "
        out.extend(f"{prefix}{values[j]} {_om_ts(ts[j])}\n" for j in range(offs[i], offs[i + 1]))
    return "".join(out)


def json_documents(batch: SampleBatch) -> Iterator[dict[str, object]]:
    """One document per series; a sample is ``[t, "value"]``, or ``[t, {histogram}]`` for a native histogram
    (:func:`histogram_document`)."""
    values: list[object] = list(_value_strings(batch.v, format_g))
    hist = batch.hist
    if hist is not None:
        for s in np.flatnonzero(hist.kind != KIND_FLOAT).tolist():
            values[s] = histogram_document(hist.batch_of(s), int(hist.row[s]))
    ts = batch.t.tolist()
    offs = batch.offsets.tolist()
    for i, labels in enumerate(batch.labels):
        a, b = offs[i], offs[i + 1]
        yield {"labels": dict(labels), "samples": [[ts[j], values[j]] for j in range(a, b)]}


def histogram_document(batch: HistogramBatch, s: int) -> dict[str, object]:
    """A native histogram sample, losslessly: the fields of the shared test data's ``input.json`` (absolute bucket
    counts in index order; integer counts as JSON integers, floats as Go ``%g`` strings, which round-trip), the
    counter-reset ``hint`` the chunk gave it (0 unknown, 1 reset, 2 not reset, 3 gauge) and, for a stale
    marker, only ``"stale": true``."""
    doc: dict[str, object] = {"kind": "float" if batch.is_float else "int"}
    if bool(batch.stale[s]):
        doc["stale"] = True
        return doc
    lay = batch.layouts
    layout = int(batch.layout[s])
    pos_spans, neg_spans = lay.spans(layout)
    pos, neg = batch.sample_buckets(s)
    number = _json_number_of(batch)
    doc.update({
        "hint": int(batch.hint[s]), "schema": int(lay.schema[layout]),
        "zero_threshold": format_g(float(lay.zero_threshold[layout])),
        "zero_count": number(batch.zero_count[s].item()), "count": number(batch.count[s].item()),
        "sum": format_g(float(batch.sum[s])),
        "positive_spans": [list(sp) for sp in pos_spans], "positive_buckets": [number(x) for x in pos.tolist()],
        "negative_spans": [list(sp) for sp in neg_spans], "negative_buckets": [number(x) for x in neg.tolist()],
    })
    if int(lay.custom_bounds[layout + 1]) > int(lay.custom_bounds[layout]):
        doc["custom_values"] = [format_g(x) for x in lay.custom(layout).tolist()]
    if int(batch.st[s]):
        doc["start_timestamp"] = int(batch.st[s])
    return doc


def _json_number_of(batch: HistogramBatch) -> Callable[[int | float], object]:
    if batch.is_float:
        return lambda x: format_g(float(x))
    return int


def csv_rows(batch: SampleBatch) -> str:
    """``series,timestamp_ms,value`` rows; a native histogram's value is its ``String()`` form."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    values = _sample_strings(batch)
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
