"""thanos-tools: one toolkit for Prometheus/Thanos TSDB blocks."""

__version__ = "0.1.0"
