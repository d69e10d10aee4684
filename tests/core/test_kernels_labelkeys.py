"""Label-key kernels (symbol-rank sequences compared like label strings)."""

from __future__ import annotations

import numpy as np

from thanostools.core.kernels import labelkeys as lk


def _keys(*sets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    flat = np.array([x for s in sets for x in s], np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    return flat, offsets


def test_compare_keys_orders_prefixes_first() -> None:
    keys, offs = _keys([0, 1], [0, 1, 2, 3], [0, 2], [0, 1])
    assert lk.compare_keys(keys, offs[0], offs[1], keys, offs[1], offs[2]) == -1
    assert lk.compare_keys(keys, offs[2], offs[3], keys, offs[1], offs[2]) == 1
    assert lk.compare_keys(keys, offs[0], offs[1], keys, offs[3], offs[4]) == 0


def test_count_not_after_and_not_after_previous() -> None:
    keys, offs = _keys([0, 1], [0, 2], [0, 2, 1, 1], [1, 0])
    assert lk.count_not_after(keys, offs, 0, np.array([0, 2], np.int64)) == 2
    assert lk.count_not_after(keys, offs, 0, np.array([9], np.int64)) == 4
    assert lk.not_after_previous(keys, offs).tolist() == [False, False, False, False]
    keys, offs = _keys([0, 2], [0, 1], [0, 1])
    assert lk.not_after_previous(keys, offs).tolist() == [False, True, True]


def test_merge_sorted_keys_shares_ids_of_equal_keys() -> None:
    keys, offs = _keys([0, 1], [0, 3], [0, 1], [0, 2], [0, 3])
    ids, firsts = lk.merge_sorted_keys(keys, offs, np.array([0, 2, 5], np.int64))
    assert ids.tolist() == [0, 2, 0, 1, 2]
    assert firsts.tolist() == [0, 3, 1]
