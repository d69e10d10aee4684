"""Both CRC-32C kernels (slicing-by-8 tables, and the CPU's crc32 instruction where there is one) agree
with the reference implementation at every length and offset."""

from __future__ import annotations

from collections.abc import Callable

import crc32c as reference
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.kernels._hwcrc import HAVE_HW_CRC, hw_crc32c
from thanostools.core.kernels.binary import crc32c, table_crc32c

KERNELS = [pytest.param(table_crc32c, id="table"),
           pytest.param(hw_crc32c, id="hardware",
                        marks=pytest.mark.skipif(not HAVE_HW_CRC, reason="no SSE4.2 crc32 instruction here"))]
Crc = Callable[[np.ndarray, int, int], int]


def test_kernels_use_the_hardware_crc_where_there_is_one() -> None:
    assert crc32c is (hw_crc32c if HAVE_HW_CRC else table_crc32c)


@pytest.mark.parametrize("kernel", KERNELS)
def test_known_vectors(kernel: Crc) -> None:
    assert kernel(np.frombuffer(b"123456789", np.uint8), 0, 9) == 0xE3069283
    assert kernel(np.zeros(0, np.uint8), 0, 0) == 0


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), skip=st.integers(0, 20))
def test_matches_reference(kernel: Crc, data: bytes, skip: int) -> None:
    arr = np.frombuffer(data, np.uint8)
    start = min(skip, len(data))
    assert kernel(arr, start, len(data)) == reference.crc32c(data[start:])
