"""The completion dropdown: an overlay under the editor's cursor, driven by the editor's keys."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Offset
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from thanostools.tui.complete import Context, Item, Kind

_KIND_STYLE = {
    Kind.METRIC: "#4fc1ff", Kind.FUNCTION: "#dcdcaa", Kind.AGGREGATION: "#c586c0", Kind.KEYWORD: "#c586c0",
    Kind.LABEL_NAME: "#9cdcfe", Kind.LABEL_VALUE: "#ce9178", Kind.DURATION: "#b5cea8", Kind.HISTORY: "#9aa0a6",
}
MAX_LABEL = 60


class CompletionMenu(Vertical):
    """Completion items with their kind; the highlighted item's signature and help below."""

    def __init__(self) -> None:
        super().__init__(id="completion")
        self.items: list[Item] = []
        self.context: Context | None = None
        self.navigated = False  # enter accepts only an item the user moved to

    def compose(self) -> ComposeResult:
        options = OptionList(id="completion-list")
        options.can_focus = False
        yield options
        yield Static("", id="completion-help")

    @property
    def options(self) -> OptionList:
        return self.query_one("#completion-list", OptionList)

    @property
    def is_open(self) -> bool:
        return bool(self.display)

    def open(self, items: Sequence[Item], context: Context, at: Offset) -> None:
        if context != self.context or not self.display:
            self.navigated = False
        self.items = list(items)
        self.context = context
        options = self.options
        options.clear_options()
        options.add_options([Option(self._prompt(item, context.prefix)) for item in self.items])
        options.highlighted = 0 if self.items else None
        self.styles.offset = (max(0, at.x - len(context.prefix)), at.y + 1)
        self.display = True
        self._show_help()

    def show_loading(self, context: Context, at: Offset) -> None:
        self.items = []
        self.context = context
        self.options.clear_options()
        self.options.add_option(Option(Text(f"loading {context.where.value}s…", style="dim italic"), disabled=True))
        self.styles.offset = (max(0, at.x - len(context.prefix)), at.y + 1)
        self.display = True
        self.query_one("#completion-help", Static).update("")

    def close(self) -> None:
        self.display = False
        self.items = []

    def move(self, delta: int) -> None:
        if not self.items:
            return
        self.navigated = True
        current = self.options.highlighted or 0
        self.options.highlighted = (current + delta) % len(self.items)
        self._show_help()

    def selected(self) -> Item | None:
        index = self.options.highlighted
        if index is None or not 0 <= index < len(self.items):
            return None
        return self.items[index]

    def _show_help(self) -> None:
        item = self.selected()
        help_text = Text()
        if item is not None and (item.detail or item.help):
            if item.detail:
                help_text.append(item.detail, style="bold")
            if item.help:
                help_text.append(("\n" if item.detail else "") + item.help, style="italic")
        self.query_one("#completion-help", Static).update(help_text)
        self.query_one("#completion-help", Static).display = bool(help_text.plain)

    @staticmethod
    def _prompt(item: Item, prefix: str) -> Text:
        label = item.label if len(item.label) <= MAX_LABEL else item.label[:MAX_LABEL - 1] + "…"
        text = Text(label)
        at = label.lower().find(prefix.lower()) if prefix else -1
        if at >= 0:
            text.stylize("bold underline", at, at + len(prefix))
        text.append(f"  {item.kind.value}", style=_KIND_STYLE[item.kind] + " italic")
        return text
