"""The console's time controls: range, end, evaluation time, step; zoom, pan and back to now."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from thanostools.core.errors import ConfigError
from thanostools.core.timeutil import format_time_ms, human_duration, parse_duration_ms, parse_time_ms

# Zoom ladder, as in the Prometheus UI.
RANGES_MS = [m * 60_000 for m in (1, 5, 15, 30, 60, 120, 360, 720, 1440, 2880, 10080, 20160, 40320, 80640,
                                  525600)]
# Points per plot cell for the automatic step (braille gives 2 dots per cell).
RESOLUTIONS = {"low": 0.5, "medium": 1.0, "high": 2.0}
MIN_STEP_MS = 1000


def parse_end(text: str, now_ms: int) -> int | None:
    """``now`` (or empty) is None, i.e. follows the clock; anything else is a fixed time."""
    s = text.strip()
    if s in ("", "now"):
        return None
    return parse_time_ms(s, now=now_ms)


def parse_step(text: str) -> int | None:
    """``auto`` (or empty) is None; otherwise a duration or seconds."""
    s = text.strip().lower()
    if s in ("", "auto"):
        return None
    try:
        ms = round(float(s) * 1000) if s.replace(".", "", 1).isdigit() else parse_duration_ms(s)
    except ConfigError:
        raise ConfigError(f"invalid step {text!r} (use auto, seconds like 15 or a duration like 1m)") from None
    if ms <= 0:
        raise ConfigError("the step must be positive")
    return ms


@dataclass(frozen=True)
class TimeState:
    range_ms: int = 3_600_000
    end_ms: int | None = None  # None: now
    eval_ms: int | None = None  # instant queries; None: the end
    step_ms: int | None = None  # None: automatic
    resolution: str = "medium"

    # --- resolved values ---------------------------------------------------------------------------

    def end(self, now_ms: int) -> int:
        return now_ms if self.end_ms is None else self.end_ms

    def start(self, now_ms: int) -> int:
        return self.end(now_ms) - self.range_ms

    def eval_time(self, now_ms: int) -> int:
        return self.end(now_ms) if self.eval_ms is None else self.eval_ms

    def step(self, plot_cells: int) -> int:
        if self.step_ms is not None:
            return self.step_ms
        points = max(1.0, plot_cells * RESOLUTIONS[self.resolution])
        return max(MIN_STEP_MS, math.ceil(self.range_ms / points / 1000) * 1000)

    # --- changes -----------------------------------------------------------------------------------

    def zoom(self, direction: int) -> TimeState:
        """``+1`` zooms in (shorter range), ``-1`` out, along the ladder; the end stays."""
        if direction > 0:
            smaller = [r for r in RANGES_MS if r < self.range_ms]
            return replace(self, range_ms=smaller[-1] if smaller else self.range_ms)
        larger = [r for r in RANGES_MS if r > self.range_ms]
        return replace(self, range_ms=larger[0] if larger else self.range_ms * 2)

    def pan(self, direction: int, now_ms: int) -> TimeState:
        """Move the window by half its range; reaching the present goes back to following now."""
        end = self.end(now_ms) + direction * self.range_ms // 2
        return replace(self, end_ms=None if end >= now_ms else end, eval_ms=None)

    def now(self) -> TimeState:
        return replace(self, end_ms=None, eval_ms=None)

    def cycle_resolution(self) -> TimeState:
        names = list(RESOLUTIONS)
        return replace(self, resolution=names[(names.index(self.resolution) + 1) % len(names)])

    # --- text --------------------------------------------------------------------------------------

    def describe_range(self) -> str:
        return human_duration(self.range_ms)

    def describe_end(self) -> str:
        return "now" if self.end_ms is None else format_time_ms(self.end_ms)

    def describe_eval(self) -> str:
        return "end" if self.eval_ms is None else format_time_ms(self.eval_ms)

    def describe_step(self, plot_cells: int) -> str:
        if self.step_ms is None:
            return f"auto ({self.resolution}) = {human_duration(self.step(plot_cells))}"
        return human_duration(self.step_ms)
