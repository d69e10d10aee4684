"""Screens of the TUI: console, block browser, dialogs."""
