"""Thanos-style compaction: planning (planner), merging blocks (merge) and the compactor loop (compactor)."""
