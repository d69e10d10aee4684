"""`njit` that compiles with numba when it is installed and runs as plain Python otherwise."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

try:  # pragma: no cover - exercised by whichever environment runs the tests
    if os.environ.get("THANOS_TOOLS_NO_NUMBA"):
        raise ImportError("numba disabled by THANOS_TOOLS_NO_NUMBA")
    import numba

    HAVE_NUMBA = True

    def njit(func: F) -> F:
        return cast(F, numba.njit(cache=True, nogil=True)(func))

except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(func: F) -> F:
        return func
