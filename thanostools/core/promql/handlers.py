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
# Functions whose handlers read native histogram samples; every other function sees its arguments' floats only.
HISTOGRAM_AWARE: set[str] = set()


def handler(*names: str, histograms: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
            if histograms:
                HISTOGRAM_AWARE.add(name)
        return fn
    return register
