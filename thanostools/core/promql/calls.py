"""Function-call dispatch: every PromQL function has a handler evaluating it for all steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError

# Imported for their registrations in HANDLERS.
from thanostools.core.promql import fn_hist, fn_info, fn_labels, fn_math, fn_window  # noqa: F401
from thanostools.core.promql.extended import eval_extended_call, extended_selector
from thanostools.core.promql.handlers import HANDLERS, HISTOGRAM_AWARE
from thanostools.core.promql.parser.ast import Call, MatrixSelector
from thanostools.core.promql.value import Value
from thanostools.core.promql.vecops import unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator


def eval_call(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    fn = HANDLERS.get(node.func.name)
    if fn is None:
        raise EvalError(f"function {node.func.name!r} is not supported by this engine")
    if node.args and isinstance(unwrap_parens(node.args[0]), MatrixSelector) and extended_selector(node.args[0]):
        return eval_extended_call(ev, node, ts)
    if node.func.name not in HISTOGRAM_AWARE:
        ev.float_only.update(id(arg) for arg in node.args)
    return fn(ev, node, ts)
