from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thanostools.core.ulid import ALPHABET, is_ulid, new_ulid, ulid_time_ms, ulid_to_int


def test_verified_promtool_ulid_decodes_to_its_creation_time() -> None:
    assert ulid_time_ms("01M8DM1M3RHBCQWWCP6Z2BDZXN") == 1795753562232


def test_new_ulid_uses_now_and_is_valid() -> None:
    before = time.time_ns() // 1_000_000
    u = new_ulid()
    after = time.time_ns() // 1_000_000
    assert is_ulid(u)
    assert before <= ulid_time_ms(u) <= after


def test_new_ulids_are_unique() -> None:
    assert len({new_ulid(1000) for _ in range(1000)}) == 1000


@given(st.integers(min_value=0, max_value=(1 << 48) - 1))
def test_time_round_trip(ms: int) -> None:
    u = new_ulid(ms)
    assert len(u) == 26 and is_ulid(u)
    assert ulid_time_ms(u) == ms


@given(st.integers(min_value=0, max_value=(1 << 47)), st.integers(min_value=1, max_value=1 << 40))
def test_text_order_follows_time(a: int, delta: int) -> None:
    assert new_ulid(a) < new_ulid(a + delta)


def test_bounds() -> None:
    assert ulid_to_int("7ZZZZZZZZZZZZZZZZZZZZZZZZZ") == (1 << 128) - 1
    assert ulid_to_int("00000000000000000000000000") == 0
    with pytest.raises(ValueError):
        new_ulid(-1)
    with pytest.raises(ValueError):
        new_ulid(1 << 48)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "01M8DM1M3RHBCQWWCP6Z2BDZX",  # 25 chars
        "01M8DM1M3RHBCQWWCP6Z2BDZXNN",  # 27 chars
        "01m8dm1m3rhbcqwwcp6z2bdzxn",  # lower case
        "81M8DM1M3RHBCQWWCP6Z2BDZXN",  # overflows 128 bits
        "01M8DM1M3RHBCQWWCP6Z2BDZXI",  # I, L, O, U are not in the alphabet
        "01M8DM1M3RHBCQWWCP6Z2BDZXL",
        "01M8DM1M3RHBCQWWCP6Z2BDZXO",
        "01M8DM1M3RHBCQWWCP6Z2BDZXU",
        "01M8DM1M3RHBCQWWCP6Z2BDZX-",
        "debug",
    ],
)
def test_is_ulid_rejects(text: str) -> None:
    assert not is_ulid(text)
    with pytest.raises(ValueError):
        ulid_time_ms(text)


def test_is_ulid_rejects_non_strings() -> None:
    assert not is_ulid(None)
    assert not is_ulid(b"01M8DM1M3RHBCQWWCP6Z2BDZXN")


def test_alphabet() -> None:
    assert len(ALPHABET) == 32 and not set("ILOU") & set(ALPHABET)
