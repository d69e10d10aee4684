"""F1: what the focused widget is for and every key that works there."""

from __future__ import annotations

import inspect
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.keys import REPLACED_KEYS, key_to_character
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Label, Static, TextArea

GLOBAL_NOTES = (
    "ctrl+p opens the command palette with every action. Queries run in the background: "
    "escape cancels a running query; the screen never freezes."
)


def describe_widget(widget: Widget | None) -> tuple[str, str]:
    """(name, help) of a widget: its HELP attribute, else its class docstring; parents are tried
    too, so an input inside the options bar explains the options bar."""
    node: DOMNode | None = widget
    while node is not None:
        text = getattr(type(node), "HELP", None) or (inspect.getdoc(type(node)) if _ours(node) else None)
        if text:
            return type(node).__name__, " ".join(str(text).split())
        node = node.parent
    return (type(widget).__name__ if widget else "screen"), ""


def _ours(node: DOMNode) -> bool:
    return type(node).__module__.startswith("thanostools.")


def _own_actions(node: DOMNode) -> set[str]:
    """Actions bound by our own classes in the node's MRO (Textual's built-in editing keys are left out)."""
    actions: set[str] = set()
    for cls in type(node).__mro__:
        if cls.__module__.startswith("thanostools."):
            for b in cls.__dict__.get("BINDINGS", []):
                if isinstance(b, Binding):
                    actions.add(b.action)
    return actions


def _types_a_character(key: str) -> bool:
    char = key_to_character(REPLACED_KEYS.get(key, key)) or ""
    return len(char) == 1 and char.isprintable()


def bindings_table(bindings: dict[str, ActiveBinding], key_display: dict[str, str], *, typing: bool = False,
                   ) -> Table:
    """Keys bound by thanos-tools (or shown in the footer), grouped by the widget that binds them; while
    ``typing`` (a text field has focus) printable keys type themselves and are left out."""
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("key")
    table.add_column("action")
    table.add_column("where", style="dim")
    rows: dict[tuple[str, str], list[str]] = {}
    for key, active in bindings.items():
        binding: Binding = active.binding
        if binding.action not in _own_actions(active.node) and not binding.show:
            continue
        if typing and _types_a_character(key):
            continue
        where = type(active.node).__name__
        rows.setdefault((binding.description or binding.action, where), []).append(key_display.get(key, key))
    for (description, where), keys in rows.items():
        table.add_row(", ".join(keys), description, where)
    return table


class HelpScreen(ModalScreen[None]):
    """Escape, q or F1 closes the help."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,f1", "close", "Close")]

    def __init__(self, focused: Widget | None, bindings: dict[str, ActiveBinding]) -> None:
        super().__init__(classes="dialog")
        self.focused_widget = focused
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        name, text = describe_widget(self.focused_widget)
        display = {key: self.app.get_key_display(active.binding) for key, active in self.bindings.items()}
        with VerticalScroll(classes="dialog-box help-box"):
            yield Label(f"Help: {name}", classes="dialog-title")
            if text:
                yield Static(text, classes="help-text")
            typing = isinstance(self.focused_widget, Input) or (
                isinstance(self.focused_widget, TextArea) and not self.focused_widget.read_only)
            yield Static(bindings_table(self.bindings, display, typing=typing), classes="help-keys")
            yield Static(Text(GLOBAL_NOTES, style="italic"), classes="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
