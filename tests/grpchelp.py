"""Helpers for gRPC tests: our StoreAPI server on a background event loop, test certificates, block builders."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np

from tests.fixtures_prom import free_port
from thanostools._proto.info.infopb import rpc_pb2 as info_pb2
from thanostools._proto.info.infopb import rpc_pb2_grpc as info_grpc
from thanostools._proto.store.storepb import rpc_pb2, rpc_pb2_grpc, types_pb2
from thanostools.core.catalog import CompactionLeftovers
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import build_aggr
from thanostools.core.errors import ConfigError
from thanostools.core.labels import Labels
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace
from thanostools.server.grpc import GrpcTLS, build_grpc_server


class StoreClient(Protocol):
    """The typed face of grpcio-tools' untyped ``StoreStub`` (the methods the tests call)."""

    def Info(self, request: rpc_pb2.InfoRequest, *, timeout: float) -> rpc_pb2.InfoResponse: ...
    def Series(self, request: rpc_pb2.SeriesRequest, *, timeout: float) -> Iterator[rpc_pb2.SeriesResponse]: ...
    def LabelNames(self, request: rpc_pb2.LabelNamesRequest, *, timeout: float) -> rpc_pb2.LabelNamesResponse: ...
    def LabelValues(self, request: rpc_pb2.LabelValuesRequest, *,
                    timeout: float) -> rpc_pb2.LabelValuesResponse: ...


class InfoClient(Protocol):
    """The typed face of grpcio-tools' untyped ``InfoStub``."""

    def Info(self, request: info_pb2.InfoRequest, *, timeout: float) -> info_pb2.InfoResponse: ...


def store_client(channel: grpc.Channel) -> StoreClient:
    client: StoreClient = rpc_pb2_grpc.StoreStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
    return client


def info_client(channel: grpc.Channel) -> InfoClient:
    client: InfoClient = info_grpc.InfoStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
    return client


class ServerThread:
    """``build_grpc_server`` + ``start`` on 127.0.0.1 in an event loop running on its own thread."""

    def __init__(self, workspace: BucketWorkspace, *, tls: GrpcTLS | None = None, **kw: Any) -> None:
        self.workspace = workspace
        self.catalog = workspace.catalog.view(CompactionLeftovers())  # the blocks serve reads
        self.security_events: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        kw.setdefault("blocks", self.catalog.blocks)
        try:
            for attempt in range(3):  # another test process may take the free port first
                self.port = free_port()
                self.address = f"127.0.0.1:{self.port}"
                try:
                    self.server = self._call(self._start(tls, kw))
                    break
                except ConfigError as exc:
                    if "cannot listen" not in str(exc) or attempt == 2:
                        raise
        except BaseException:
            self._end_loop()
            raise

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self, tls: GrpcTLS | None, kw: dict[str, Any]) -> Any:
        server = await build_grpc_server(catalog=self.catalog, address=self.address, tls=tls,
                                         on_security_event=self.security_events.append, max_workers=2, **kw)
        await server.start()
        return server

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self._call(self.server.stop(None))
            self._end_loop()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def store(self, channel: grpc.Channel) -> StoreClient:
        return store_client(channel)


def server_factory() -> Iterator[type[ServerThread]]:
    """Body of a fixture: yields a class whose instances are servers, all stopped when the fixture ends."""
    started: list[ServerThread] = []

    class _Factory(ServerThread):
        def __init__(self, workspace: BucketWorkspace, **kw: Any) -> None:
            started.append(self)
            super().__init__(workspace, **kw)

    yield _Factory
    for s in started:
        s.stop()


def matcher(name: str, value: str,
            kind: types_pb2.LabelMatcher.Type = types_pb2.LabelMatcher.EQ) -> types_pb2.LabelMatcher:
    return types_pb2.LabelMatcher(type=kind, name=name, value=value)


def series_of(frames: Sequence[rpc_pb2.SeriesResponse]) -> list[types_pb2.Series]:
    out: list[types_pb2.Series] = []
    for f in frames:
        kind = f.WhichOneof("result")
        if kind == "series":
            out.append(f.series)
        elif kind == "batch":
            out.extend(f.batch.series)
    return out


def warnings_of(frames: Sequence[rpc_pb2.SeriesResponse]) -> list[str]:
    return [f.warning for f in frames if f.WhichOneof("result") == "warning"]


def labels_of(s: types_pb2.Series) -> Labels:
    return tuple((lab.name, lab.value) for lab in s.labels)


def set_external_labels(block_dir: Path, labels: Mapping[str, str]) -> None:
    """Give a promtool block a Thanos section with external labels, as a sidecar upload does."""
    path = block_dir / "meta.json"
    doc = json.loads(path.read_text())
    doc["thanos"] = {"labels": dict(labels), "downsample": {"resolution": 0}, "source": "sidecar"}
    path.write_text(json.dumps(doc))


# --- downsampled blocks ----------------------------------------------------------------------------

M5 = 300_000


def window_aggregates(t: np.ndarray, v: np.ndarray, res: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """§7.4 for one batch of raw float samples -> aggregate name -> (t, v)."""
    w = np.minimum(t - t % res + res - 1, t[-1])
    keys, first = np.unique(w, return_index=True)
    groups = np.split(v, first[1:])
    counter = np.cumsum(np.concatenate([[v[0]], np.where(np.diff(v) < 0, v[1:], np.diff(v))]))
    last_of = np.append(first[1:], v.shape[0]) - 1
    return {
        "count": (keys, np.array([g.shape[0] for g in groups], np.float64)),
        "sum": (keys, np.array([g.sum() for g in groups])),
        "min": (keys, np.array([g.min() for g in groups])),
        "max": (keys, np.array([g.max() for g in groups])),
        "counter": (np.concatenate([[t[0]], keys, [keys[-1]]]),
                    np.concatenate([[v[0]], counter[last_of], [v[-1]]])),
    }


@dataclass
class DownsampledSeries:
    labels: Labels
    t: np.ndarray
    v: np.ndarray


def write_downsampled(parent: Path, series: Sequence[DownsampledSeries], *, ext: Mapping[str, str],
                      min_time: int, max_time: int, res: int = M5, drop: Sequence[str] = ()) -> str:
    """A block of one AggrChunk per series (aggregates in ``drop`` left out)."""
    w = BlockWriter(str(parent), external_labels=ext, resolution=res, source="compactor",
                    min_time=min_time, max_time=max_time)
    for s in sorted(series, key=lambda s: s.labels):
        aggs = window_aggregates(s.t, s.v, res)
        names = ("count", "sum", "min", "max", "counter")
        subs: list[tuple[int, bytes] | None] = [None if n in drop else (1, xor.encode(*aggs[n])) for n in names]
        payload = np.frombuffer(build_aggr(subs), np.uint8)
        keys = aggs["count"][0]
        w.add_chunks(s.labels, np.array([0xFF]), payload, np.array([0, payload.size]), keys[:1], keys[-1:],
                     int(keys.shape[0]))
    return w.finish().ulid


# --- certificates ----------------------------------------------------------------------------------


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def make_certs(directory: Path, clients: Sequence[str] = ()) -> Certs:
    """A CA with a server cert (127.0.0.1/localhost) and a client cert (CN ``client``), and an unrelated CA with
    a client cert; plus, for each name in ``clients``, ``<name>.crt``/``<name>.key`` with that CN from the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(subject: str, issuer: tuple[x509.Name, Any] | None, *, ca: bool = False,
              server: bool = False) -> tuple[Any, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_name, issuer_key = issuer if issuer else (name(subject), key)
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        if not ca:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return key, b.sign(issuer_key, hashes.SHA256())

    def save(stem: str, key: Any, cert: x509.Certificate) -> tuple[Path, Path]:
        cp, kp = directory / f"{stem}.crt", directory / f"{stem}.key"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return cp, kp

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = issue("test-ca", None, ca=True)
    other_key, other = issue("other-ca", None, ca=True)
    ca_path, _ = save("ca", ca_key, ca)
    other_path, _ = save("other-ca", other_key, other)
    sc, sk = save("server", *issue("server", (ca.subject, ca_key), server=True))
    cc, ck = save("client", *issue("client", (ca.subject, ca_key)))
    oc, ok = save("other-client", *issue("intruder", (other.subject, other_key)))
    for cn in clients:
        save(cn, *issue(cn, (ca.subject, ca_key)))
    return Certs(ca_path, sc, sk, cc, ck, other_path, oc, ok)
