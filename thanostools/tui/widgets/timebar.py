"""Time controls and Thanos query options above the results."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select

from thanostools.tui.sources import QuerySettings
from thanostools.tui.timectl import RESOLUTIONS, TimeState

RESOLUTION_CHOICES = ("auto", "raw", "5m", "1h")


class OptionsBar(Vertical):
    """Range, end, evaluation time, step (auto: range ÷ plot width at low/medium/high resolution),
    dedup with replica labels, partial response, max source resolution. Enter in a field applies it."""

    HELP = __doc__

    class Changed(Message):
        """A field was edited: ``name`` is the field, ``value`` its new text (or bool for switches)."""

        def __init__(self, name: str, value: str | bool) -> None:
            super().__init__()
            self.name = name
            self.value = value

    def __init__(self, state: TimeState, settings: QuerySettings) -> None:
        super().__init__(id="options")
        self._state = state
        self._settings = settings

    def compose(self) -> ComposeResult:
        with Horizontal(classes="opt-row"):
            yield Label("range", classes="opt-label")
            yield Input(self._state.describe_range(), id="opt-range", classes="opt-short")
            yield Label("end", classes="opt-label")
            yield Input(self._state.describe_end(), id="opt-end", classes="opt-time")
            yield Label("eval time", classes="opt-label")
            yield Input(self._state.describe_eval(), id="opt-eval", classes="opt-time")
            yield Label("step", classes="opt-label")
            yield Input("auto", id="opt-step", classes="opt-short")
            yield Select([(f"{r} res", r) for r in RESOLUTIONS], value=self._state.resolution, allow_blank=False,
                         id="opt-resolution", classes="opt-select")
        with Horizontal(classes="opt-row"):
            yield Checkbox("dedup", self._settings.dedup, id="opt-dedup", compact=True)
            yield Label("replica labels", classes="opt-label")
            yield Input(",".join(self._settings.replica_labels), id="opt-replicas", classes="opt-time")
            yield Checkbox("partial response", self._settings.partial_response, id="opt-partial", compact=True)
            yield Label("max source resolution", classes="opt-label")
            yield Select([(r, r) for r in RESOLUTION_CHOICES], value=self._settings.max_source_resolution,
                         allow_blank=False, id="opt-maxres", classes="opt-select")

    def show(self, state: TimeState, settings: QuerySettings) -> None:
        """Reflect state changed by keys (zoom, pan, now, toggles) without emitting Changed."""
        self._state, self._settings = state, settings
        values = {"#opt-range": state.describe_range(), "#opt-end": state.describe_end(),
                  "#opt-eval": state.describe_eval(),
                  "#opt-step": "auto" if state.step_ms is None else f"{state.step_ms / 1000:g}s"}
        for selector, value in values.items():
            field = self.query_one(selector, Input)
            if field.value != value and not field.has_focus:
                field.value = value
        with self.prevent(Checkbox.Changed, Select.Changed):
            self.query_one("#opt-dedup", Checkbox).value = settings.dedup
            self.query_one("#opt-partial", Checkbox).value = settings.partial_response
            self.query_one("#opt-maxres", Select).value = settings.max_source_resolution
            self.query_one("#opt-resolution", Select).value = state.resolution

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id:
            self.post_message(self.Changed(event.input.id.removeprefix("opt-"), event.value))

    def on_input_blurred(self, event: Input.Blurred) -> None:
        if event.input.id:
            self.post_message(self.Changed(event.input.id.removeprefix("opt-"), event.value))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        if event.checkbox.id:
            self.post_message(self.Changed(event.checkbox.id.removeprefix("opt-"), event.value))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id and isinstance(event.value, str):
            self.post_message(self.Changed(event.select.id.removeprefix("opt-"), event.value))
