"""Remembered registry answers: separate lifetimes for "yes" and "no", one lookup in flight per
key, an expired "yes" served at once while it is refreshed, and a bound on how long a caller
waits for the backend.

`RegistryCache` does no I/O of its own: it is given the backend's lookup coroutine function and
a clock, so any backend that asks a remote service can reuse it and tests can drive time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from gateway.registry.base import RegistryUnavailable

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)

DEFAULT_MAX_NEGATIVE_ENTRIES = 100_000


@dataclass
class CacheStats:
    """Counters for metrics and logs; they only ever grow.

    - `hits`: answers from an unexpired entry; `misses`: calls that needed the backend, either
      a lookup of their own or a share of one in flight (`shared`).
    - `lookups`: backend lookups made; `errors`: lookups that failed; `stale_answers`: "yes"
      answers from an expired entry (served while it is refreshed in the background);
      `timeouts`: callers that stopped waiting for a lookup after the lookup timeout.
    - `throttles`: throttled responses the backend received, each retry included; counted by
      the backend (the cache cannot see them).
    """

    hits: int = 0
    misses: int = 0
    lookups: int = 0
    shared: int = 0
    stale_answers: int = 0
    errors: int = 0
    throttles: int = 0
    timeouts: int = 0


class RegistryCache(Generic[K]):
    """Caches `lookup(key) -> bool` answers.

    - A "yes" is trusted for `positive_ttl` seconds, a "no" for `negative_ttl` seconds.
    - Concurrent `is_registered(key)` calls for the same key share a single lookup.
    - A key whose "yes" has expired is answered "yes" at once, and looked up again in the
      background: a known charge point never waits for a slow or hung backend. When that lookup
      says "no", the next call gets "no"; when it fails, the failure is logged and the "yes"
      stays (even long expired) for as long as the backend fails.
    - Any other key waits for the lookup, at most `lookup_timeout` seconds (None: no bound),
      then raises `RegistryUnavailable`; the lookup carries on and its answer is remembered. A
      failed lookup raises `RegistryUnavailable` too. Failures are not cached: the next call
      looks up again.
    - "No" answers are bounded to `max_negative_entries` (oldest dropped first), so a flood of
      unknown ids cannot grow memory without limit. "Yes" answers are bounded by the number of
      registered charge points.
    """

    def __init__(
        self,
        lookup: Callable[[K], Awaitable[bool]],
        *,
        positive_ttl: float,
        negative_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        max_negative_entries: int = DEFAULT_MAX_NEGATIVE_ENTRIES,
        lookup_timeout: float | None = None,
    ) -> None:
        if lookup_timeout is not None and lookup_timeout <= 0:
            raise ValueError(f"lookup_timeout must be > 0 seconds, got {lookup_timeout}")
        if positive_ttl < 0 or negative_ttl < 0:
            raise ValueError(
                f"registry cache lifetimes must be >= 0 seconds, got positive_ttl={positive_ttl} "
                f"and negative_ttl={negative_ttl}"
            )
        if max_negative_entries < 1:
            raise ValueError(f"max_negative_entries must be >= 1, got {max_negative_entries}")
        self._lookup = lookup
        self._positive_ttl = positive_ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._max_negative_entries = max_negative_entries
        self._lookup_timeout = lookup_timeout
        # key -> time the answer expires. Expired "yes" entries are kept: they are what makes
        # stale answers possible during an outage. "No" entries are in insertion order, which is
        # also expiry order because they all share one lifetime.
        self._registered_until: dict[K, float] = {}
        self._unknown_until: dict[K, float] = {}
        self._in_flight: dict[K, asyncio.Task[bool]] = {}
        self._superseded: set[asyncio.Task[bool]] = set()
        self.stats = CacheStats()

    async def is_registered(self, key: K) -> bool:
        cached = self.cached_answer(key)
        if cached is not None:
            self.stats.hits += 1
            return cached
        self.stats.misses += 1
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._look_up(key), name=f"registry-lookup-{key}")
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._lookup_done(key, done))
        else:
            self.stats.shared += 1
        if self.was_registered(key):
            self.stats.stale_answers += 1  # the lookup refreshes the entry in the background
            return True
        # Shielded: a caller that gives up (handshake timeout, lookup timeout) must not cancel
        # the lookup that other callers of the same key are waiting for.
        if self._lookup_timeout is None:
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._lookup_timeout)
        except TimeoutError:
            self.stats.timeouts += 1
            raise RegistryUnavailable(
                f"the registry did not answer for {key} within {self._lookup_timeout:g} s"
            ) from None

    def cached_answer(self, key: K) -> bool | None:
        """The unexpired answer for `key`, or None when a lookup is needed."""
        now = self._clock()
        registered_until = self._registered_until.get(key)
        if registered_until is not None and now < registered_until:
            return True
        self._drop_expired_unknown(now)
        unknown_until = self._unknown_until.get(key)
        if unknown_until is not None and now < unknown_until:
            return False
        return None

    def looking_up(self, key: K) -> bool:
        """Whether a lookup of `key` is under way (a background refresh included)."""
        return key in self._in_flight

    async def lookup_done(self, key: K) -> None:
        """Wait for the lookup of `key` under way, if any, whatever its outcome."""
        task = self._in_flight.get(key)
        if task is not None:
            await asyncio.wait([task])

    def was_registered(self, key: K) -> bool:
        """Whether `key` was answered "yes" at some point and not "no" since."""
        return key in self._registered_until

    def forget(self, key: K) -> None:
        """Drop what is known about `key`; the next call looks it up."""
        self._registered_until.pop(key, None)
        self._unknown_until.pop(key, None)

    def mark_unregistered(self, key: K) -> None:
        """Answer "no" for `key` until the negative lifetime expires, without a lookup.

        For when the backend announces that `key` left (a Thing-deleted event). No stale "yes"
        is given for it afterwards. A lookup already in flight may have read the old state: its
        callers get "no" and its answer is not remembered.
        """
        superseded = self._in_flight.pop(key, None)
        if superseded is not None:
            self._superseded.add(superseded)
            superseded.add_done_callback(self._superseded.discard)
        self._remember(key, False)

    async def close(self) -> None:
        """Cancel the lookups in flight; their callers get `CancelledError`."""
        tasks = [*self._in_flight.values(), *self._superseded]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _look_up(self, key: K) -> bool:
        self.stats.lookups += 1
        try:
            registered = await self._lookup(key)
        except Exception as exc:
            self.stats.errors += 1
            if self.was_registered(key):
                log.warning("registry.stale_answer", cp_id=str(key), answer=True, error=str(exc))
                return True
            if isinstance(exc, RegistryUnavailable):
                raise
            raise RegistryUnavailable(f"registry lookup of {key} failed: {exc}") from exc
        if self._in_flight.get(key) is not asyncio.current_task():
            return False  # `mark_unregistered(key)` ran while this lookup was under way
        self._remember(key, registered)
        return registered

    def _remember(self, key: K, registered: bool) -> None:
        now = self._clock()
        if registered:
            self._unknown_until.pop(key, None)
            self._registered_until[key] = now + self._positive_ttl
            return
        self._registered_until.pop(key, None)
        self._unknown_until.pop(key, None)  # re-inserted at the end: keeps expiry order
        while len(self._unknown_until) >= self._max_negative_entries:
            del self._unknown_until[next(iter(self._unknown_until))]
        self._unknown_until[key] = now + self._negative_ttl

    def _drop_expired_unknown(self, now: float) -> None:
        for key, until in _first(self._unknown_until, 64):
            if until > now:
                break
            del self._unknown_until[key]

    def _lookup_done(self, key: K, task: asyncio.Task[bool]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an error nobody awaited is not reported twice


def _first(entries: dict[K, float], count: int) -> list[tuple[K, float]]:
    """The `count` oldest entries, without walking the whole dict."""
    oldest: list[tuple[K, float]] = []
    for item in entries.items():
        if len(oldest) == count:
            break
        oldest.append(item)
    return oldest
