from __future__ import annotations

import json

import pytest

from thanostools.core.errors import FormatError
from thanostools.core.tsdb.markers import (
    DELETION_MARK,
    MARKER_FILENAMES,
    NO_COMPACT_MARK,
    NO_DOWNSAMPLE_MARK,
    DeletionMark,
    MarkerError,
    MarkerKind,
    NoCompactMark,
    NoDownsampleMark,
    decode_marker,
    encode_marker,
    marker_key,
    marker_kind_from_filename,
    now_seconds,
)

ULID = "01FET1EK9BC3E0QD4886RQCM8K"


def test_deletion_mark_matches_the_spec_example_exactly() -> None:
    example = (
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":1,"details":"block rewritten",'
        b'"deletion_time":1632549558}'
    )
    mark = decode_marker(DELETION_MARK, example)
    assert mark == DeletionMark(id=ULID, deletion_time=1632549558, details="block rewritten")
    assert mark.marked_at == 1632549558
    assert encode_marker(mark) == example


def test_details_omitted_when_empty() -> None:
    expected = b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":1,"deletion_time":5}'
    assert encode_marker(DeletionMark(ULID, 5)) == expected


def test_no_compact_and_no_downsample_shapes() -> None:
    nc = NoCompactMark(ULID, 7, reason="index-size-exceeding", details="big")
    assert encode_marker(nc) == (
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":1,"details":"big","no_compact_time":7,'
        b'"reason":"index-size-exceeding"}'
    )
    nd = NoDownsampleMark(ULID, 8)
    assert encode_marker(nd) == (
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":1,"no_downsample_time":8,"reason":"manual"}'
    )
    assert decode_marker(MarkerKind.NO_COMPACT, encode_marker(nc)) == nc
    assert decode_marker(NO_DOWNSAMPLE_MARK, encode_marker(nd)) == nd


def test_keys_and_kinds() -> None:
    assert marker_key(NoCompactMark(ULID, 1)) == f"{ULID}/{NO_COMPACT_MARK}"
    assert marker_kind_from_filename(f"{ULID}/{DELETION_MARK}") is MarkerKind.DELETION
    assert marker_kind_from_filename("no-downsample-mark.json") is MarkerKind.NO_DOWNSAMPLE
    assert marker_kind_from_filename("meta.json") is None
    assert {k.filename for k in MarkerKind} == set(MARKER_FILENAMES)
    assert DeletionMark.kind is MarkerKind.DELETION
    with pytest.raises(ValueError):
        decode_marker("meta.json", b"{}")


def test_markers_written_compactly_without_trailing_newline() -> None:
    data = encode_marker(DeletionMark(ULID, now_seconds(), details="a <b> & c"))
    assert b" " not in data.replace(b"a \\u003cb\\u003e \\u0026 c", b"") and not data.endswith(b"\n")
    assert decode_marker(DELETION_MARK, data).details == "a <b> & c"


def test_decode_accepts_whitespace_and_unknown_keys() -> None:
    data = json.dumps({"id": ULID, "version": 1, "deletion_time": 3, "future": [1]}, indent=2)
    assert decode_marker(DELETION_MARK, data) == DeletionMark(ULID, 3)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"[]",
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","deletion_time":1}',
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":2,"deletion_time":1}',
        b'{"id":"nope","version":1,"deletion_time":1}',
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":1,"deletion_time":"1"}',
        b'{"id":"01FET1EK9BC3E0QD4886RQCM8K","version":1,"deletion_time":1,"details":3}',
    ],
)
def test_broken_markers(data: bytes) -> None:
    with pytest.raises(MarkerError) as info:
        decode_marker(DELETION_MARK, data, block=ULID)
    assert isinstance(info.value, FormatError)
    assert info.value.block == ULID and info.value.file == DELETION_MARK
    assert str(info.value).startswith(f"broken marker {ULID}/{DELETION_MARK}: ")
