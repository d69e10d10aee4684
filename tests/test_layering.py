"""The core never loads a front end, a UI library or gRPC server code (DESIGN.md layering rule 1).

The gRPC *client* (remote StoreAPI source) may be used by the core."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_listing_does_not_load_numba_or_numpy() -> None:
    """`bucket ls` must start fast: the CLI path for listing (metas only) never imports numba, nor numpy."""
    code = ("import sys\nfrom thanostools.cli.main import cli\n"
            "import thanostools.cli.bucket, thanostools.core.workspace, thanostools.core.inspect\n"
            "print('numba' in sys.modules, 'numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_core_starts_no_grpc_server() -> None:
    """`import grpc` loads grpc.aio too, so the client is allowed; creating servers is not."""
    from pathlib import Path

    root = Path(thanostools.core.__path__[0])
    offenders = [str(p) for p in root.rglob("*.py") if any(s in p.read_text() for s in ("grpc.server(", "aio.server("))]
    assert offenders == []


def _import_cycles() -> list[list[str]]:
    """Groups of modules that import each other at run time (module- or function-level imports alike;
    imports under ``if TYPE_CHECKING`` are annotations only and do not count)."""
    import grimp

    graph = grimp.build_graph("thanostools", exclude_type_checking_imports=True, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's strongly connected components, iteratively
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    assert _import_cycles() == []


def test_missing_shared_scripts_fail_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import sharedfiles

    monkeypatch.setattr(sharedfiles, "PROMQLTEST_DIR", tmp_path / "absent")
    monkeypatch.delenv("CI", raising=False)
    assert sharedfiles.promqltest_scripts() == []
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RuntimeError, match="CI is set"):
        sharedfiles.promqltest_scripts()
