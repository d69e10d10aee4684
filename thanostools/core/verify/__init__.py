"""``bucket verify``: Thanos' checks (overlaps, index health, duplicated compactions), our deep checks,
and repair (FORMATS.md §8.9, §8.10)."""
