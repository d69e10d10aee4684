"""What this endpoint offers (FORMATS.md §9.4): ``thanos.info.Info/Info`` and the legacy ``thanos.Store/Info``.

The store section is always set (a nil one tells the querier there is no StoreAPI here). With no
blocks the time range is empty (min > max), so queriers skip us until blocks appear.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from thanostools._proto.info.infopb import rpc_pb2 as info_pb2
from thanostools._proto.store.labelpb import types_pb2 as label_pb2
from thanostools._proto.store.storepb import rpc_pb2
from thanostools.core import labels as labelset
from thanostools.core.inspect import BlockInfo
from thanostools.core.labels import Labels
from thanostools.server.grpc.convert import labels_to_proto

COMPONENT_TYPE = "store"
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
SUPPORTS_SHARDING = True
SUPPORTS_WITHOUT_REPLICA_LABELS = True


def label_sets(infos: Sequence[BlockInfo]) -> list[Labels]:
    """Distinct external label sets, sorted by their string form as Thanos does."""
    sets = {b.meta.external_labels for b in infos}
    return sorted(sets, key=lambda ls: labelset.format_labels(ls, with_name=False))


def time_range(infos: Sequence[BlockInfo]) -> tuple[int, int]:
    if not infos:
        return MAX_INT64, MIN_INT64
    return min(b.meta.min_time for b in infos), max(b.meta.max_time for b in infos)


def tsdb_ranges(infos: Sequence[BlockInfo]) -> list[tuple[Labels, int, int]]:
    """Per external label set, the time ranges covered by its blocks, contiguous ones merged."""
    by_set: dict[Labels, list[tuple[int, int]]] = defaultdict(list)
    for b in infos:
        by_set[b.meta.external_labels].append((b.meta.min_time, b.meta.max_time))
    out: list[tuple[Labels, int, int]] = []
    for ls in label_sets(infos):
        spans = sorted(by_set[ls])
        lo, hi = spans[0]
        for start, end in spans[1:]:
            if start > hi:
                out.append((ls, lo, hi))
                lo = start
            hi = max(hi, end)
        out.append((ls, lo, hi))
    return out


def info_response(infos: Sequence[BlockInfo]) -> info_pb2.InfoResponse:
    mint, maxt = time_range(infos)
    store = info_pb2.StoreInfo(
        min_time=mint, max_time=maxt,
        supports_sharding=SUPPORTS_SHARDING,
        supports_without_replica_labels=SUPPORTS_WITHOUT_REPLICA_LABELS,
        tsdb_infos=[info_pb2.TSDBInfo(labels=label_pb2.ZLabelSet(labels=labels_to_proto(ls)), min_time=lo, max_time=hi)
                    for ls, lo, hi in tsdb_ranges(infos)],
    )
    return info_pb2.InfoResponse(
        label_sets=[label_pb2.ZLabelSet(labels=labels_to_proto(ls)) for ls in label_sets(infos)],
        ComponentType=COMPONENT_TYPE,
        store=store,
    )


def legacy_info_response(infos: Sequence[BlockInfo]) -> rpc_pb2.InfoResponse:
    sets = label_sets(infos)
    mint, maxt = time_range(infos)
    return rpc_pb2.InfoResponse(
        labels=labels_to_proto(sets[0]) if sets else [],
        min_time=mint, max_time=maxt,
        storeType=rpc_pb2.STORE,
        label_sets=[label_pb2.LabelSet(labels=labels_to_proto(ls)) for ls in sets],
    )
