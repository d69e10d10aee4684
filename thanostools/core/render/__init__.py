"""Results as text for people and programs: Prometheus API JSON, promtool dump and analyze layouts."""
