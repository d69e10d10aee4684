"""The PromQL editor: a TextArea highlighted by our lexer, with run keys and completion keys."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea
from textual.widgets.text_area import TextAreaTheme

from thanostools.tui.highlight import STYLES, highlights

THEME = TextAreaTheme(name="promql", syntax_styles=dict(STYLES))


class QueryEditor(TextArea):
    """PromQL editor. Enter runs a one-line query (inserts a newline in a multi-line one); ctrl+j or
    ctrl+enter always run; ctrl+n inserts a newline; tab or ctrl+space complete (tab accepts, enter accepts
    an item you moved to with up/down); escape closes the menu, then leaves the editor."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "newline", "Newline", show=False),
        Binding("ctrl+space,ctrl+@", "complete", "Complete", show=False),
    ]

    class Submitted(Message):
        def __init__(self, editor: QueryEditor, text: str) -> None:
            super().__init__()
            self.editor = editor
            self.text = text

    class CompletionKey(Message):
        """A key for the completion menu: ``up``, ``down``, ``accept`` (tab), ``enter``, ``close`` or ``open``."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    # Class defaults: TextArea.__init__ already builds the highlight map.
    error_position: int | None = None
    menu_open = False

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        super().__init__(text, id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         highlight_cursor_line=False)
        self.register_theme(THEME)
        self.theme = "promql"

    # --- highlighting ----------------------------------------------------------------------------

    def _build_highlight_map(self) -> None:
        """Highlights from our lexer instead of tree-sitter (TextArea calls this after every edit)."""
        self._line_cache.clear()
        self._highlights.clear()
        self._highlights.update(highlights(self.text, self.error_position))

    def mark_error(self, position: int | None) -> None:
        if position != self.error_position:
            self.error_position = position
            self._build_highlight_map()
            self.refresh()

    # --- offsets -----------------------------------------------------------------------------------

    @property
    def cursor_offset(self) -> int:
        return self.document.get_index_from_location(self.cursor_location)  # type: ignore[attr-defined,no-any-return]

    def replace_span(self, start: int, end: int, text: str) -> None:
        """Replace ``[start, end)`` (character offsets) and put the cursor after the new text."""
        doc = self.document
        a = doc.get_location_from_index(start)  # type: ignore[attr-defined]
        b = doc.get_location_from_index(end)  # type: ignore[attr-defined]
        result = self.replace(text, a, b)
        self.cursor_location = result.end_location

    # --- keys --------------------------------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        handled = True
        if self.menu_open and key in ("up", "down", "tab", "enter", "escape"):
            self.post_message(self.CompletionKey({"tab": "accept", "escape": "close"}.get(key, key)))
        elif key == "enter" and "\n" not in self.text:
            self.post_message(self.Submitted(self, self.text))
        elif key == "tab":
            self.post_message(self.CompletionKey("open"))
        else:
            handled = False
        if handled:
            event.stop()
            event.prevent_default()

    def action_newline(self) -> None:
        self.insert("\n")

    def action_complete(self) -> None:
        self.post_message(self.CompletionKey("open"))
