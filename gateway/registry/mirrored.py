"""`MirroredRegistry`: answers from a copy of the whole registry, so connecting never calls AWS.

Wraps an AWS-backed registry (its `source`). At `start()` a background task reads every
registered id, page by page (ListThings for aws-iot, a Scan of the key for dynamodb), into a
`Mirror`, then reads it again every `resync_interval` seconds (0: only at start), which removes
ids deleted without an event. Meanwhile:

- an id in the mirror is answered "registered" at once, without AWS: throttling and outages do
  not reach the charge points the mirror knows;
- any other id (the first read not finished yet, or a Thing created since the last read) is
  looked up by the source as before (cached, single flight, DynamoDB batched); a "registered"
  answer is added to the mirror;
- `invalidate(id)` (a Thing-deleted event) removes it from the mirror and the source's cache.

`loaded` turns true when the first read is complete; `/health` reports not ready until then,
while the gateway keeps admitting charge points through the per-id lookups. A page that fails
is asked again after a back-off (1 s doubling to 60 s), where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from gateway.backoff import backoff_delays
from gateway.registry.base import RegistryUnavailable
from gateway.registry.cache import CacheStats
from gateway.registry.mirror import Mirror, SyncResult

log = structlog.get_logger(__name__)

DEFAULT_RESYNC_INTERVAL = 300.0
RETRY_INITIAL = 1.0
RETRY_MAXIMUM = 60.0

# Where the next page of a listing starts: ListThings' `nextToken`, a Scan's `LastEvaluatedKey`.
PageToken = object


class MirrorSource(Protocol):
    """A registry that can also list every registered id (`CachedAwsRegistry`)."""

    @property
    def backend(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def stats(self) -> CacheStats: ...

    async def start(self) -> None: ...

    async def is_registered(self, cp_id: str) -> bool: ...

    def invalidate(self, cp_id: str) -> None: ...

    def forget(self, cp_id: str) -> None: ...

    async def list_page(self, token: PageToken | None) -> tuple[list[str], PageToken | None]: ...

    async def close(self) -> None: ...


@dataclass
class MirrorStats:
    """Counters for metrics; `ids` and `loaded` are current values, the rest only grow.

    - `hits`: answers from the mirror; `misses`: questions passed to the per-id lookup.
    - `syncs`: complete reads of the registry; `pages`: pages read; `page_errors`: pages that
      failed and were asked again; `last_sync_seconds`: how long the last complete read took.
    """

    hits: int = 0
    misses: int = 0
    syncs: int = 0
    pages: int = 0
    page_errors: int = 0
    ids: int = 0
    loaded: bool = False
    last_sync_seconds: float = 0.0


class MirroredRegistry:
    def __init__(
        self,
        source: MirrorSource,
        *,
        resync_interval: float = DEFAULT_RESYNC_INTERVAL,
        retry_initial: float = RETRY_INITIAL,
        retry_maximum: float = RETRY_MAXIMUM,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if resync_interval < 0:
            raise ValueError(f"resync_interval must be >= 0 seconds, got {resync_interval}")
        self.source = source
        self.resync_interval = resync_interval
        self.mirror = Mirror()
        self.mirror_stats = MirrorStats()
        self._retry_initial = retry_initial
        self._retry_maximum = retry_maximum
        self._clock = clock
        self._loaded = asyncio.Event()
        self._syncing: asyncio.Task[None] | None = None

    @property
    def stats(self) -> CacheStats:
        """The per-id lookups' cache counters (see `RegistryCacheCollector`)."""
        return self.source.stats

    @property
    def loaded(self) -> bool:
        """Whether the first complete read of the registry is done."""
        return self.mirror.complete

    async def start(self) -> None:
        """Start the source, then read the registry in the background."""
        await self.source.start()
        self._syncing = asyncio.create_task(self._sync_forever(), name="registry-mirror")

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    async def is_registered(self, cp_id: str) -> bool:
        if cp_id in self.mirror:
            self.mirror_stats.hits += 1
            return True
        self.mirror_stats.misses += 1
        registered = await self.source.is_registered(cp_id)
        if registered:
            self.mirror.add(cp_id)
            self.mirror_stats.ids = len(self.mirror)
        return registered

    def invalidate(self, cp_id: str) -> None:
        self.mirror.remove(cp_id)
        self.mirror_stats.ids = len(self.mirror)
        self.source.invalidate(cp_id)

    async def sync(self) -> None:
        """Read every registered id into the mirror; failed pages are retried until it ends."""
        started = self._clock()
        self.mirror.begin_sync()
        delays = backoff_delays(initial=self._retry_initial, maximum=self._retry_maximum)
        token: PageToken | None = None
        pages = 0
        try:
            while True:
                try:
                    ids, token = await self.source.list_page(token)
                except Exception as exc:
                    await self._page_failed(exc, pages, next(delays))
                    continue
                pages += 1
                self.mirror_stats.pages += 1
                self.mirror.add_page(ids)
                self.mirror_stats.ids = len(self.mirror)
                if token is None:
                    break
        except BaseException:
            self.mirror.abandon_sync()
            raise
        self._synced(self.mirror.finish_sync(), pages, self._clock() - started)

    async def close(self) -> None:
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing
        await self.source.close()

    async def _sync_forever(self) -> None:
        while True:
            await self.sync()
            if self.resync_interval == 0:
                return
            await asyncio.sleep(self.resync_interval)

    async def _page_failed(self, exc: Exception, pages: int, retry_in: float) -> None:
        self.mirror_stats.page_errors += 1
        if isinstance(exc, RegistryUnavailable):
            log.warning(
                "registry.mirror_page_failed",
                backend=self.source.backend,
                pages_read=pages,
                error=str(exc),
                retry_in=round(retry_in, 2),
            )
        else:
            log.exception(
                "registry.mirror_page_failed",
                backend=self.source.backend,
                pages_read=pages,
                retry_in=round(retry_in, 2),
            )
        await asyncio.sleep(retry_in)

    def _synced(self, result: SyncResult, pages: int, seconds: float) -> None:
        for cp_id in result.removed:
            self.source.forget(cp_id)  # else a cached "yes" would answer for it once more
        stats = self.mirror_stats
        first = not stats.loaded
        stats.syncs += 1
        stats.ids = result.ids
        stats.loaded = True
        stats.last_sync_seconds = seconds
        self._loaded.set()
        log.info(
            "registry.mirror_loaded" if first else "registry.mirror_synced",
            backend=self.source.backend,
            ids=result.ids,
            added=result.added,
            removed=len(result.removed),
            pages=pages,
            seconds=round(seconds, 3),
        )
