"""Output arrays that kernels fill without knowing their final size: grown by doubling, new room zeroed."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit

A = TypeVar("A", bound=NDArray[np.generic])


@njit
def grow(arr: A, need: int) -> A:
    """``arr`` when it holds ``need`` items, else a copy at least twice as long (numba compiles one per dtype)."""
    if need <= arr.shape[0]:
        return arr
    out = np.zeros(max(need, 2 * arr.shape[0]), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out  # type: ignore[return-value]
