"""Prometheus's stale marker as the uint64 bit pattern kernels compare raw values with (the number itself lives
in ``core/constants.py``, which stays free of numpy so that listing commands start fast)."""

from __future__ import annotations

import numpy as np

from thanostools.core.constants import STALE_NAN_BITS

STALE_NAN_BITS_U64 = np.uint64(STALE_NAN_BITS)
