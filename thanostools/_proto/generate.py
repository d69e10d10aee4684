"""Regenerate the Python gRPC/protobuf modules from ``proto/thanos`` (``python -m thanostools._proto.generate``).

The ``.proto`` files are compiled with their paths relative to ``proto/thanos`` so the descriptor file
names (visible through server reflection) are upstream's import paths, e.g. ``store/storepb/rpc.proto``.
protoc writes absolute imports such as ``from store.labelpb import types_pb2``; they are rewritten to
package-relative ones, and every generated file gets headers that exempt it from ruff and mypy.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

PACKAGE = "thanostools._proto"
PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PACKAGE_DIR.parent.parent / "proto" / "thanos"
HEADER = "# ruff: noqa\n# mypy: ignore-errors\n# Generated from proto/thanos by thanostools._proto.generate.\n"
INIT = '"""Generated package (see thanostools._proto.generate)."""\n'


def proto_files(root: Path = PROTO_ROOT) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    if protoc.main(["protoc", *args]) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


def _fix_imports(text: str, module_pkg: str, tops: set[str]) -> str:
    """``from store.labelpb import x_pb2`` -> ``from ...store.labelpb import x_pb2`` (relative to ``_proto``)."""
    dots = "." * (module_pkg.count(".") + 2 if module_pkg else 1)

    def repl(m: re.Match[str]) -> str:
        target = m.group(1)
        if target.split(".")[0] not in tops:
            return m.group(0)
        return f"from {dots}{target} import {m.group(2)}"

    text = re.sub(r"^from ([\w.]+) import (\w+_pb2(?:_grpc)?)\b", repl, text, flags=re.M)
    # The module name protoc records for the message classes (their __module__).
    return re.sub(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')([\w.]+')", rf"\g<1>{PACKAGE}.\g<2>", text)


def _client_only(text: str) -> str:
    """Drop grpcio-tools' server scaffolding (``*Servicer`` base classes whose methods only answer
    UNIMPLEMENTED, ``add_*Servicer_to_server``): our server registers its own handlers."""
    blocks = re.split(r"(?m)^(?=\S)", text)
    unused = re.compile(r"^(class \w+Servicer\b|def add_\w+Servicer_to_server\()")
    return "".join(b for b in blocks if not unused.match(b))


def generate(out_dir: Path = PACKAGE_DIR, root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every ``.proto`` under ``root`` into ``out_dir``; returns the files written."""
    files = proto_files(root)
    tops = {f.split("/")[0] for f in files}
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"-I{root}", f"-I{include}"]
        _protoc([*base, f"--python_out={tmp}", f"--pyi_out={tmp}", *files])
        services = [f for f in files if re.search(r"^service ", (root / f).read_text(), flags=re.M)]
        if services:
            _protoc([*base, f"--grpc_python_out={tmp}", *services])
        for top in tops:
            shutil.rmtree(out_dir / top, ignore_errors=True)
        written: list[Path] = []
        for src in sorted(Path(tmp).rglob("*")):
            if not src.is_file():
                continue
            rel = src.relative_to(tmp)
            pkg = ".".join(rel.parent.parts)
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = _fix_imports(src.read_text(), pkg, tops)
            if src.name.endswith("_pb2_grpc.py"):
                text = _client_only(text)
            dest.write_text(HEADER + text)
            written.append(dest)
            for parent in rel.parents:
                init = out_dir / parent / "__init__.py"
                if parent != Path(".") and not init.exists():
                    init.write_text(INIT)
                    written.append(init)
    return sorted(written)


def main() -> int:
    for path in generate():
        print(path.relative_to(PACKAGE_DIR.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
