"""Python modules generated from our own ``proto/thanos`` files (Thanos StoreAPI, Info, hints).

Regenerate with ``python -m thanostools._proto.generate``; a test fails when they are stale.
"""
