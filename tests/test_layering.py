"""The core never loads a front end, a UI library or gRPC server code (DESIGN.md layering rule 1).

The gRPC *client* (remote StoreAPI source) may be used by the core."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import thanostools.core

FORBIDDEN = ("click", "rich", "textual", "aiohttp", "thanostools.cli", "thanostools.tui",
             "thanostools.server")


def test_core_imports_no_front_end() -> None:
    modules = [m.name for m in pkgutil.walk_packages(thanostools.core.__path__, "thanostools.core.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or "
        f"any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core loaded: {out.stdout.strip()}"


def test_listing_does_not_load_numba() -> None:
    """`bucket ls` must start fast: the CLI path for listing never imports numba."""
    code = "import sys\nfrom thanostools.cli.main import cli\nprint('numba' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_core_starts_no_grpc_server() -> None:
    """`import grpc` loads grpc.aio too, so the client is allowed; creating servers is not."""
    from pathlib import Path

    root = Path(thanostools.core.__path__[0])
    offenders = [str(p) for p in root.rglob("*.py") if any(s in p.read_text() for s in ("grpc.server(", "aio.server("))]
    assert offenders == []
