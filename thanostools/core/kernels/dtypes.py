"""Array types by dtype, one name each, for signatures where an int64/uint64 mix-up is possible (numpy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]  # byte buffers
I64 = NDArray[np.int64]  # times, offsets, positions, lengths, refs, row indices
U64 = NDArray[np.uint64]  # raw float64 bits (StaleNaN exact)
F64 = NDArray[np.float64]  # values
Bool = NDArray[np.bool_]
