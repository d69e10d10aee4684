"""Where series come from besides the local bucket: remote StoreAPI endpoints, and fan-out over several sources.

``remote`` needs grpcio and protobuf (the ``serve`` extra); import it only when endpoints are configured.
"""
