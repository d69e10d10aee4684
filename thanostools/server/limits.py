"""Query limits: concurrency (a queue, then 503) and per-client rate limiting (token buckets, then 429).

Per-query limits (timeout, samples, series) are enforced by the PromQL engine through its options;
what is here protects the daemon as a whole. A request that trips a limit fails alone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


class Busy(Exception):
    """No query slot became free in time, or the queue is full."""


@dataclass
class RateLimited(Exception):
    retry_after_s: float


class ConcurrencyGate:
    """At most ``limit`` queries run at once; up to ``queue`` more wait, each at most its timeout."""

    def __init__(self, limit: int, queue: int | None = None) -> None:
        self.limit = max(1, limit)
        self.max_queue = self.limit * 4 if queue is None else queue
        self._sem = asyncio.Semaphore(self.limit)
        self.running = 0
        self.waiting = 0

    async def acquire(self, wait_s: float) -> None:
        if self._sem.locked() and self.waiting >= self.max_queue:
            raise Busy(f"too many queries waiting ({self.waiting} queued, {self.running} running)")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=max(wait_s, 0.001))
        except TimeoutError:
            raise Busy(f"no query slot became free within {wait_s:g}s ({self.running} running)") from None
        finally:
            self.waiting -= 1
        self.running += 1

    def release(self) -> None:
        self.running -= 1
        self._sem.release()


class RateLimiter:
    """One token bucket per client: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int = 0, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str) -> None:
        """Spend one token of ``client``; raises :class:`RateLimited` with the wait until one is there."""
        if not self.enabled:
            return
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            raise RateLimited((1 - tokens) / self.rate)
        self._buckets[client] = (tokens - 1, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)  # least recently seen client; it starts full again

    def give_back(self, client: str) -> None:
        """Return the token of a :meth:`take` that turned out not to count (a login that succeeded)."""
        found = self._buckets.get(client)
        if self.enabled and found is not None:
            self._buckets[client] = (min(self.burst, found[0] + 1), found[1])


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` wants whole seconds; round up so a client that obeys it gets a token."""
    return str(max(1, math.ceil(seconds)))
