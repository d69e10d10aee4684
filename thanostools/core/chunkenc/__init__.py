"""chunkenc."""
