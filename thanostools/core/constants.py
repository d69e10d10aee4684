"""Numbers that Prometheus and Thanos fix once for everyone: the stale marker and the downsampling resolutions.

A leaf module: every layer (kernels included) may import it; it imports nothing, not even numpy (`bucket ls`
must not pay for it).
"""

from __future__ import annotations

# Prometheus's value.StaleNaN: the NaN payload that marks a series as stale.
STALE_NAN_BITS = 0x7FF0000000000002

# Chunk encodings of native histograms: integer and float (FORMATS.md, HISTOGRAMS.md).
ENC_HISTOGRAM = 2
ENC_FLOAT_HISTOGRAM = 3

# The schema of native histograms with custom bucket bounds (NHCB).
CUSTOM_BUCKETS_SCHEMA = -53

# Thanos's downsampling resolutions, in milliseconds (meta.json thanos.downsample.resolution).
RESOLUTION_RAW = 0
RESOLUTION_5M = 300_000
RESOLUTION_1H = 3_600_000
RESOLUTIONS_BY_NAME = {"raw": RESOLUTION_RAW, "5m": RESOLUTION_5M, "1h": RESOLUTION_1H}
RESOLUTION_NAMES = {ms: name for name, ms in RESOLUTIONS_BY_NAME.items()}


def resolution_name(ms: int) -> str:
    """``raw``, ``5m`` or ``1h``; any other resolution as its number of milliseconds."""
    return RESOLUTION_NAMES.get(ms, str(ms))
