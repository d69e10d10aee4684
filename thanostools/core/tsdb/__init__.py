"""tsdb."""
