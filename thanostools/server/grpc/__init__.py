"""The Thanos StoreAPI side of ``serve``: Store, Info, health and reflection over gRPC (FORMATS.md §9)."""

from thanostools.server.grpc.server import GrpcTLS, build_grpc_server

__all__ = ["GrpcTLS", "build_grpc_server"]
