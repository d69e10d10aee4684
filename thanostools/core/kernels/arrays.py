"""Output arrays that kernels fill without knowing their final size: grown by doubling, new room zeroed."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit


@njit
def grow_i64(arr: NDArray[np.int64], need: int) -> NDArray[np.int64]:
    if need <= arr.shape[0]:
        return arr
    out = np.zeros(max(need, 2 * arr.shape[0]), dtype=np.int64)
    out[: arr.shape[0]] = arr
    return out


@njit
def grow_u64(arr: NDArray[np.uint64], need: int) -> NDArray[np.uint64]:
    if need <= arr.shape[0]:
        return arr
    out = np.zeros(max(need, 2 * arr.shape[0]), dtype=np.uint64)
    out[: arr.shape[0]] = arr
    return out


@njit
def grow_f64(arr: NDArray[np.float64], need: int) -> NDArray[np.float64]:
    if need <= arr.shape[0]:
        return arr
    out = np.zeros(max(need, 2 * arr.shape[0]), dtype=np.float64)
    out[: arr.shape[0]] = arr
    return out
