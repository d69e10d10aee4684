"""Compiled kernels (numba) with a pure-Python fallback."""
