"""Object storage: buckets over fsspec, Thanos objstore YAML, the local range cache."""
