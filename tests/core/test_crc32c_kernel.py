"""The slicing-by-8 CRC-32C kernel agrees with the reference implementation at every length and offset."""

from __future__ import annotations

import crc32c as reference
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.kernels.binary import crc32c


def test_known_vectors() -> None:
    assert crc32c(np.frombuffer(b"123456789", np.uint8), 0, 9) == 0xE3069283
    assert crc32c(np.zeros(0, np.uint8), 0, 0) == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 20))
def test_matches_reference(data: bytes, skip: int) -> None:
    arr = np.frombuffer(data, np.uint8)
    start = min(skip, len(data))
    assert crc32c(arr, start, len(data)) == reference.crc32c(data[start:])
