"""``thanos-tools tui``: a PromQL console and block browser in the terminal (Textual).

Nothing here is imported by the core; the CLI imports :mod:`thanostools.tui.app` lazily.
"""
