"""serve's syncs set the long-lived heap apart from full garbage collections, and free what they dropped."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from thanostools.server.state import ServerConfig, ServerState


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_sync_freezes_what_is_alive_and_frees_it_at_the_next(tmp_path: Path, unfrozen: None) -> None:
    state = ServerState(ServerConfig(bucket_url=str(tmp_path)))
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    state.sync()
    assert gc.get_freeze_count() > 0
    del cycle
    gc.collect()
    assert gone() is not None  # frozen: the collector does not look at it
    state.sync()
    assert gone() is None
