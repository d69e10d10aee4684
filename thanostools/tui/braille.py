"""Line plots in Unicode braille (2×4 dots per cell), drawn with numpy over all series at once.

No Textual here: :func:`render_plot` returns rich ``Text`` lines for a given cell size, with a
y axis on the left and a time axis below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from rich.text import Text

# Dot bit of pixel (row % 4, column % 2) inside a braille cell.
_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], np.uint8)
PALETTE = ("#5b9bd5", "#ed7d31", "#70ad47", "#e0474c", "#a37ee8", "#ffc000", "#4bc6c6", "#e874c0",
           "#9aa0a6", "#a9d18e", "#f4b183", "#8faadc")
_TIME_STEPS_MS = (1_000, 5_000, 15_000, 30_000, 60_000, 300_000, 900_000, 1_800_000, 3_600_000, 10_800_000,
                  21_600_000, 43_200_000, 86_400_000, 172_800_000, 604_800_000, 2_592_000_000, 31_536_000_000)
_SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


@dataclass(frozen=True)
class PlotSeries:
    t: np.ndarray  # int64 ms
    v: np.ndarray  # float64
    color: str


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def format_value(v: float) -> str:
    """Short axis label: SI suffixes for large numbers, exponent for tiny ones."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    for size, suffix in _SI:
        if a >= size:
            return f"{v / size:.3g}{suffix}"
    if a < 0.001:
        return f"{v:.1e}"
    return f"{v:.4g}"


def stack(series: Sequence[PlotSeries]) -> list[PlotSeries]:
    """Cumulative sums over series at equal timestamps (a range query's steps); gaps stay gaps."""
    if not series:
        return []
    grid = np.unique(np.concatenate([s.t for s in series]))
    acc = np.zeros(grid.shape[0])
    out = []
    for s in series:
        idx = np.searchsorted(grid, s.t)
        ok = np.isfinite(s.v)
        acc[idx[ok]] += s.v[ok]
        v = np.where(ok, acc[idx], np.nan)
        out.append(PlotSeries(s.t, v, s.color))
    return out


def y_range(series: Sequence[PlotSeries], from_zero: bool) -> tuple[float, float] | None:
    finite = [s.v[np.isfinite(s.v)] for s in series]
    finite = [f for f in finite if f.size]
    if not finite:
        return None
    lo = min(float(f.min()) for f in finite)
    hi = max(float(f.max()) for f in finite)
    if from_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _pixels(series: Sequence[PlotSeries], x0: int, x1: int, lo: float, hi: float, w_px: int, h_px: int,
            max_gap_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates of all points and of the lines between neighbours, with their series index."""
    t = np.concatenate([s.t for s in series]).astype(np.float64)
    v = np.concatenate([s.v for s in series]).astype(np.float64)
    sid = np.repeat(np.arange(len(series)), [s.t.shape[0] for s in series])
    x = (t - x0) / max(1, x1 - x0) * (w_px - 1)
    y = (h_px - 1) - (v - lo) / (hi - lo) * (h_px - 1)
    ok = np.isfinite(y) & (x >= 0) & (x <= w_px - 1)
    seg = ok[:-1] & ok[1:] & (sid[:-1] == sid[1:]) & (np.diff(t) <= max_gap_ms)
    a = np.flatnonzero(seg)
    xa, ya = x[a].astype(np.float32), y[a].astype(np.float32)
    dx, dy = x[a + 1].astype(np.float32) - xa, y[a + 1].astype(np.float32) - ya
    n = np.maximum(np.ceil(np.maximum(np.abs(dx), np.abs(dy))), 1).astype(np.int32)
    starts = np.repeat(np.cumsum(n, dtype=np.int64) - n, n)
    frac = (np.arange(starts.shape[0], dtype=np.int64) - starts).astype(np.float32) / np.repeat(n, n)
    px = np.concatenate([x[ok].astype(np.float32), np.repeat(xa, n) + np.repeat(dx, n) * frac])
    py = np.concatenate([y[ok].astype(np.float32), np.repeat(ya, n) + np.repeat(dy, n) * frac])
    ps = np.concatenate([sid[ok], np.repeat(sid[a], n)]).astype(np.int32)
    # Points and interpolations lie inside the plot already (off-range points were dropped above).
    return np.rint(px).astype(np.int32), np.rint(py).astype(np.int32), ps


def rasterize(series: Sequence[PlotSeries], x0: int, x1: int, lo: float, hi: float, width: int, height: int,
              max_gap_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(dot bits per cell, index of the topmost series in each cell or -1); later series are on top."""
    owner_px = np.full((height * 4, width * 2), -1, np.int32)
    if series:
        px, py, ps = _pixels(series, x0, x1, lo, hi, width * 2, height * 4, max_gap_ms)
        np.maximum.at(owner_px, (py, px), ps) if ps.shape[0] < 4096 else _max_into(owner_px, py, px, ps)
    cells = owner_px.reshape(height, 4, width, 2)
    bits = ((cells >= 0) * _BITS[None, :, None, :]).sum(axis=(1, 3)).astype(np.uint8)
    return bits, cells.max(axis=(1, 3))


def _max_into(owner_px: np.ndarray, py: np.ndarray, px: np.ndarray, ps: np.ndarray) -> None:
    """``owner_px[py, px] = max(ps)`` per pixel without ufunc.at: sort by series, the last write wins."""
    order = np.argsort(ps, kind="stable")
    owner_px[py[order], px[order]] = ps[order]


def _cells_text(bits: np.ndarray, owner: np.ndarray, colors: Sequence[str]) -> list[Text]:
    lines = []
    chars = np.where(bits > 0, bits.astype(np.int64) + 0x2800, 0x20)
    for r in range(bits.shape[0]):
        text = Text()
        row_chars, row_owner = chars[r], owner[r]
        cuts = np.flatnonzero(np.diff(row_owner)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [row_owner.shape[0]]]), strict=True):
            who = int(row_owner[lo])
            segment = "".join(map(chr, row_chars[lo:hi].tolist()))
            text.append(segment, style=colors[who] if who >= 0 else "")
        lines.append(text)
    return lines


def nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _time_label(ms: int, span_ms: int, step_ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    if span_ms > 86_400_000:
        return dt.strftime("%m-%d %H:%M")
    return dt.strftime("%H:%M:%S" if step_ms < 60_000 else "%H:%M")


def _x_axis(x0: int, x1: int, width: int, pad: int) -> list[Text]:
    span = max(1, x1 - x0)
    label_w = 12 if span > 86_400_000 else 9
    step = next((s for s in _TIME_STEPS_MS if s / span * width >= label_w + 2), _TIME_STEPS_MS[-1])
    axis = ["─"] * width
    labels = [" "] * (width + label_w)
    tick = -(-x0 // step) * step
    while tick <= x1:
        col = round((tick - x0) / span * (width - 1))
        axis[col] = "┬"
        text = _time_label(tick, span, step)
        if col + len(text) <= width + label_w:
            labels[col:col + len(text)] = text
        tick += step
    return [Text(" " * pad + "└" + "".join(axis), style="dim"),
            Text(" " * (pad + 1) + "".join(labels).rstrip(), style="dim")]


def render_plot(series: Sequence[PlotSeries], x0: int, x1: int, width: int, height: int, *,
                from_zero: bool = False, stacked: bool = False, step_ms: int = 0) -> list[Text]:
    """The whole plot (y labels, braille area, time axis) in ``width`` × ``height`` cells."""
    shown = stack(series) if stacked else list(series)
    yr = y_range(shown, from_zero)
    if yr is None or width < 12 or height < 4:
        return [Text("no data points in range" if yr is None else "too small to plot", style="dim")]
    lo, hi = yr
    plot_h = height - 2
    ticks = nice_ticks(lo, hi, max(1, plot_h // 3))
    labels = {round((hi - t) / (hi - lo) * (plot_h * 4 - 1)) // 4: format_value(t) for t in ticks}
    pad = max(len(s) for s in labels.values())
    plot_w = width - pad - 1
    max_gap = max(step_ms, 1) * 3 // 2 if step_ms else 2**62
    bits, owner = rasterize(shown, x0, x1, lo, hi, plot_w, plot_h, max_gap)
    body = _cells_text(bits, owner, [s.color for s in shown])
    lines = []
    for r, line in enumerate(body):
        label = labels.get(r)
        prefix = Text(f"{label:>{pad}}┤" if label is not None else " " * pad + "│", style="dim")
        lines.append(prefix + line)
    return lines + _x_axis(x0, x1, plot_w, pad)
