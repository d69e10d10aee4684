"""``thanos-tools serve``: the Prometheus HTTP API and the Thanos StoreAPI over one synced view of a bucket.

Nothing here is imported by the core or by the other commands; ``cli/serve.py`` imports it lazily.
"""
