# ruff: noqa
# mypy: ignore-errors
# Generated from proto/thanos by thanostools._proto.generate.
from ...store.labelpb import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("label_sets", "ComponentType", "store", "rules", "metric_metadata", "targets", "exemplars", "query", "status")
    LABEL_SETS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTTYPE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    METRIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    label_sets: _containers.RepeatedCompositeFieldContainer[_types_pb2.ZLabelSet]
    ComponentType: str
    store: StoreInfo
    rules: RulesInfo
    metric_metadata: MetricMetadataInfo
    targets: TargetsInfo
    exemplars: ExemplarsInfo
    query: QueryAPIInfo
    status: StatusInfo
    def __init__(self, label_sets: _Optional[_Iterable[_Union[_types_pb2.ZLabelSet, _Mapping]]] = ..., ComponentType: _Optional[str] = ..., store: _Optional[_Union[StoreInfo, _Mapping]] = ..., rules: _Optional[_Union[RulesInfo, _Mapping]] = ..., metric_metadata: _Optional[_Union[MetricMetadataInfo, _Mapping]] = ..., targets: _Optional[_Union[TargetsInfo, _Mapping]] = ..., exemplars: _Optional[_Union[ExemplarsInfo, _Mapping]] = ..., query: _Optional[_Union[QueryAPIInfo, _Mapping]] = ..., status: _Optional[_Union[StatusInfo, _Mapping]] = ...) -> None: ...

class StoreInfo(_message.Message):
    __slots__ = ("min_time", "max_time", "supports_sharding", "supports_without_replica_labels", "tsdb_infos", "supports_projections")
    MIN_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_SHARDING_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_WITHOUT_REPLICA_LABELS_FIELD_NUMBER: _ClassVar[int]
    TSDB_INFOS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    min_time: int
    max_time: int
    supports_sharding: bool
    supports_without_replica_labels: bool
    tsdb_infos: _containers.RepeatedCompositeFieldContainer[TSDBInfo]
    supports_projections: bool
    def __init__(self, min_time: _Optional[int] = ..., max_time: _Optional[int] = ..., supports_sharding: _Optional[bool] = ..., supports_without_replica_labels: _Optional[bool] = ..., tsdb_infos: _Optional[_Iterable[_Union[TSDBInfo, _Mapping]]] = ..., supports_projections: _Optional[bool] = ...) -> None: ...

class RulesInfo(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetricMetadataInfo(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TargetsInfo(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExemplarsInfo(_message.Message):
    __slots__ = ("min_time", "max_time")
    MIN_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_FIELD_NUMBER: _ClassVar[int]
    min_time: int
    max_time: int
    def __init__(self, min_time: _Optional[int] = ..., max_time: _Optional[int] = ...) -> None: ...

class QueryAPIInfo(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusInfo(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TSDBInfo(_message.Message):
    __slots__ = ("labels", "min_time", "max_time")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MIN_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_FIELD_NUMBER: _ClassVar[int]
    labels: _types_pb2.ZLabelSet
    min_time: int
    max_time: int
    def __init__(self, labels: _Optional[_Union[_types_pb2.ZLabelSet, _Mapping]] = ..., min_time: _Optional[int] = ..., max_time: _Optional[int] = ...) -> None: ...
