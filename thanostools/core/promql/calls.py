"""Function-call dispatch: every PromQL function has a handler evaluating it for all steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.promql.ast import Call
from thanostools.core.promql.value import Value

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

Handler = Callable[["Evaluator", Call, np.ndarray], Value]
HANDLERS: dict[str, Handler] = {}
_loaded = False


def handler(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn
    return register


def _load() -> None:
    global _loaded
    if not _loaded:
        from thanostools.core.promql import fn_hist, fn_labels, fn_math, fn_window  # noqa: F401
        _loaded = True


def eval_call(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    _load()
    fn = HANDLERS.get(node.func.name)
    if fn is None:
        raise EvalError(f"function {node.func.name!r} is not supported by this engine")
    return fn(ev, node, ts)
