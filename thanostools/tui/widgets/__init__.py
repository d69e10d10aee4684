"""Widgets of the TUI: editor, completion menu, result tabs, time bar."""
