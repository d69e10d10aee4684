"""``build_grpc_server``: the StoreAPI, Info, health and reflection services on one grpc.aio server.

Not supported: the ``snappy`` compressor a querier uses with ``--grpc-compression=snappy`` (grpcio
cannot register custom compressors; FORMATS.md §13 pitfall 24). Queriers must use no compression.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from thanostools.core.catalog import BlockCatalog
from thanostools.core.errors import ConfigError
from thanostools.core.inspect import BlockInfo
from thanostools.server.authz import Authorizer
from thanostools.server.grpc.blocks import BlockSet
from thanostools.server.grpc.store import INFO_SERVICE, STORE_SERVICE, StoreService
from thanostools.server.querylog import QueryLog


@dataclass(frozen=True)
class GrpcTLS:
    """Server certificate and key (PEM); with ``client_ca_file`` clients must present a cert it signed."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"gRPC TLS {what} {path}: {exc.strerror or exc}") from None


def server_credentials(tls: GrpcTLS) -> grpc.ServerCredentials:
    key = _read(tls.key_file, "key")
    cert = _read(tls.cert_file, "certificate")
    ca = _read(tls.client_ca_file, "client CA") if tls.client_ca_file else None
    try:
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
    except Exception as exc:
        raise ConfigError(f"gRPC TLS: {exc}") from None


async def build_grpc_server(
    *,
    blocks: Callable[[], list[BlockInfo]],
    catalog: BlockCatalog,
    address: str,
    tls: GrpcTLS | None = None,
    max_workers: int = 8,
    on_security_event: Callable[[str], None] | None = None,
    ready: Callable[[], bool] | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    authz: Authorizer | None = None,
    query_log: QueryLog | None = None,
) -> grpc.aio.Server:
    """A bound, not yet started server (call ``await server.start()``; ``await server.stop(grace)`` to end).

    ``blocks`` is called per request for the blocks to serve (opened through ``catalog``); ``ready``
    (optional) gates Info with "Not ready" until the first sync, as the store gateway does. Must be
    awaited in the event loop that will run the server. ``authz`` adds each caller's policy matchers
    (identity: the mTLS client CN) to every Series/LabelNames/LabelValues request; ``query_log`` gets
    one entry per such call.
    """
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="thanos-tools-grpc")
    service = StoreService(BlockSet(blocks, catalog, on_security_event), pool, ready, authz=authz, query_log=query_log)
    # SO_REUSEPORT off: a second server on a busy port must fail, not silently share it.
    server = grpc.aio.server(interceptors=list(interceptors),
                             options=[("grpc.so_reuseport", 0), ("grpc.max_send_message_length", -1)])
    server.add_generic_rpc_handlers(service.handlers())
    checker = health.aio.HealthServicer()
    for name in ("", STORE_SERVICE, INFO_SERVICE):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        [STORE_SERVICE, INFO_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = server.add_secure_port(address, server_credentials(tls)) if tls else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen for gRPC on {address}: {exc}") from None
    if not port:
        raise ConfigError(f"cannot listen for gRPC on {address}")
    weakref.finalize(server, pool.shutdown, wait=False)
    return server
