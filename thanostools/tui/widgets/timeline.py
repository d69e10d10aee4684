"""Blocks as a timeline: one line per stream (external labels) and resolution, coloured by compaction level."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from thanostools.core.constants import resolution_name
from thanostools.core.inspect import BlockInfo
from thanostools.core.labels import Labels
from thanostools.core.timeutil import format_minute_ms

LEVEL_COLORS = ("#5b9bd5", "#70ad47", "#ffc000", "#ed7d31", "#a37ee8")
MARK_CHARS = {"deletion": "✗", "no-compact": "‖", "no-downsample": "↓"}
MAX_LABEL = 38


def level_color(level: int) -> str:
    return LEVEL_COLORS[min(max(level, 1), len(LEVEL_COLORS)) - 1]


def stream_name(labels: Labels, resolution: int) -> str:
    ext = ",".join(f"{k}={v}" for k, v in labels) or "(no external labels)"
    return f"{ext} {resolution_name(resolution)}"


def streams(blocks: Sequence[BlockInfo]) -> dict[str, list[BlockInfo]]:
    out: dict[str, list[BlockInfo]] = {}
    for b in sorted(blocks, key=lambda b: (b.meta.external_labels, -b.meta.resolution, b.meta.min_time)):
        out.setdefault(stream_name(b.meta.external_labels, b.meta.resolution), []).append(b)
    return out


def _axis(t0: int, t1: int, width: int, pad: int) -> Text:
    left = format_minute_ms(t0)
    right = format_minute_ms(t1)
    gap = max(1, width - len(left) - len(right))
    return Text(" " * (pad + 1) + left + " " * gap + right, style="dim")


def legend() -> Text:
    text = Text("level ", style="dim")
    for i, color in enumerate(LEVEL_COLORS):
        text.append("█", style=color)
        text.append(f"{i + 1}{'+' if i == len(LEVEL_COLORS) - 1 else ''} ", style="dim")
    text.append("  marks ", style="dim")
    for name, ch in MARK_CHARS.items():
        text.append(f"{ch} {name}  ", style="dim")
    text.append("▲ selected", style="dim")
    return text


def render_timeline(blocks: Sequence[BlockInfo], width: int, selected: str | None) -> list[Text]:
    """Lines: a legend, one bar per stream, a time axis."""
    if not blocks:
        return [Text("no blocks match", style="dim")]
    groups = streams(blocks)
    t0 = min(b.meta.min_time for b in blocks)
    t1 = max(b.meta.max_time for b in blocks)
    pad = min(MAX_LABEL, max(len(name) for name in groups))
    bar_w = max(10, width - pad - 1)
    lines = [legend()]
    for name, infos in groups.items():
        line = Text((name if len(name) <= pad else name[:pad - 1] + "…").ljust(pad) + " ", style="bold")
        line.append_text(_bar(infos, t0, t1, bar_w, selected))
        lines.append(line)
    lines.append(_axis(t0, t1, bar_w, pad))
    return lines


def _bar(infos: Sequence[BlockInfo], t0: int, t1: int, width: int, selected: str | None) -> Text:
    cells: list[tuple[str, str]] = [(" ", "")] * width
    span = max(1, t1 - t0)
    for n, b in enumerate(infos):
        a = int((b.meta.min_time - t0) / span * width)
        z = max(a + 1, int((b.meta.max_time - t0) / span * width))
        color = level_color(b.meta.level)
        fill = "█" if n % 2 == 0 else "▓"
        for c in range(a, min(z, width)):
            cells[c] = (fill, color)
        if b.marks and a < width:
            cells[a] = (MARK_CHARS.get(b.marks[0], "?"), f"bold red on {color}")
        if b.ulid == selected and a < width:
            cells[a] = ("▲", f"bold white on {color}")
    text = Text()
    for ch, style in cells:
        text.append(ch, style=style)
    return text


class Timeline(Widget):
    """Blocks per stream (external labels) and resolution over time; colour is the compaction level."""

    def __init__(self) -> None:
        super().__init__(id="timeline")
        self.blocks: list[BlockInfo] = []
        self.selected: str | None = None

    def show(self, blocks: Sequence[BlockInfo], selected: str | None) -> None:
        self.blocks = list(blocks)
        self.selected = selected
        self.styles.height = len(streams(self.blocks)) + 2 if self.blocks else 1
        self.refresh(layout=True)

    def render(self) -> Text:
        return Text("\n").join(render_timeline(self.blocks, self.content_region.width or 80, self.selected))
