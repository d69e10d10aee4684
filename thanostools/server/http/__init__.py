"""HTTP front end of ``serve``: the Prometheus API v1, health, metrics, security."""
