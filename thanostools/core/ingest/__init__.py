"""Data coming in: text exposition parsing, `bucket import`, `bucket generate`, block-set writing."""
