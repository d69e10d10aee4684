"""The registry of PromQL function handlers: each ``fn_*`` module registers the functions it evaluates."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.promql.parser.ast import Call
from thanostools.core.promql.value import Value

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

Handler = Callable[["Evaluator", Call, np.ndarray], Value]
HANDLERS: dict[str, Handler] = {}


def handler(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn
    return register
