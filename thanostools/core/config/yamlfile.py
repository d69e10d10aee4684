"""Reading the YAML files operators hand us (objstore, relabel, deletion, web and authz configs): one-line,
located errors naming the flag or file, never a traceback."""

from __future__ import annotations

import yaml

from thanostools.core.errors import ConfigError


def read_config_text(path: str, what: str) -> str:
    """The file's text; ``what`` names it in errors (a flag or a kind of config)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def load_yaml(text: str, what: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> object:
    """Parse one YAML document; syntax errors become ``<what>: invalid YAML (line L, column C): problem``."""
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{what}: invalid YAML{where}: {problem}") from None


def load_yaml_file(path: str, what: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> object:
    return load_yaml(read_config_text(path, what), f"{what} {path}", loader=loader)
