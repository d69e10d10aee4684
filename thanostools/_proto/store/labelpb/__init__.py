"""Generated package (see thanostools._proto.generate)."""
