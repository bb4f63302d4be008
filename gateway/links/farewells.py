"""Offline documents that had to wait: CPs closed while the broker could not be reached.

A CP closed because the broker stayed away past the grace period cannot be announced offline at
that moment, so its retained presence would go on saying "connected" (or, where the broker saw
its connection drop, the will's `gateway_lost`). The link keeps such farewells and publishes them
once the broker answers again, each only if the retained document is still that connection's
own: a newer connection of the CP, here or on another replica, has published its own by then,
which must stand. (Between the read and the publish there is a window of one round trip in
which a newer document from another replica could be overwritten.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from gateway.links.connection import LinkError
from gateway.observability import Metrics
from gateway.presence import Presence
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


class RetainedPublisher(Protocol):
    """A broker connection of the gateway's that can read retained messages (probe, lane)."""

    @property
    def ready(self) -> bool: ...

    async def read_retained(self, topic: str) -> bytes | None: ...

    async def publish_retained(self, topic: str, payload: bytes) -> None: ...


@dataclass(frozen=True)
class LateFarewell:
    presence: Presence  # what the connection published while it lived, and its will
    farewell: bytes


def still_ours(retained: bytes | None, presence: Presence) -> bool:
    """Whether the retained document is the one the closed connection left behind."""
    return retained is not None and retained in (presence.online, presence.will)


class LateFarewells:
    def __init__(self, metrics: Metrics, publisher: Callable[[], RetainedPublisher | None]) -> None:
        """`publisher`: the connection to publish through now, None while none is ready."""
        self._metrics = metrics
        self._publisher = publisher
        self._pending: dict[str, LateFarewell] = {}  # by presence topic
        self._publishing: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def keep(self, topic: str, presence: Presence, farewell: bytes) -> None:
        """Publish `farewell` on `topic` as soon as the broker answers (now, if it does)."""
        self._pending[topic] = LateFarewell(presence, farewell)
        self.publish_soon()

    def forget(self, topic: str) -> None:
        """A new connection of the CP opened here: its own documents follow."""
        self._pending.pop(topic, None)

    def publish_soon(self) -> asyncio.Task[None] | None:
        """Publish what is kept, in the background, if a connection is ready (call it when one
        becomes ready). Returns the task doing it (the one already under way, if any)."""
        if self._publishing is not None and not self._publishing.done():
            return self._publishing
        if not self._pending or self._closed:
            return None
        publisher = self._publisher()
        if publisher is None or not publisher.ready:
            return None
        self._publishing = asyncio.create_task(self._publish_all(publisher))
        return self._publishing

    async def _publish_all(self, publisher: RetainedPublisher) -> None:
        counts = {"published": 0, "superseded": 0}
        try:
            for topic in list(self._pending):
                late = self._pending.get(topic)
                if late is None:
                    continue
                retained = await publisher.read_retained(topic)
                if not publisher.ready:
                    break  # kept for the next time the broker is back
                if self._pending.get(topic) is not late:
                    continue  # the CP connected here again meanwhile
                result = "superseded"
                if still_ours(retained, late.presence):
                    await publisher.publish_retained(topic, late.farewell)
                    result = "published"
                del self._pending[topic]
                counts[result] += 1
                self._metrics.late_farewells.labels(result=result).inc()
        except LinkError as exc:
            log.warning("presence.late_farewells_paused", left=len(self._pending), error=str(exc))
        finally:
            if any(counts.values()):
                log.info("presence.late_farewells", **counts)

    async def close(self) -> None:
        self._closed = True  # the link is closing: nothing starts after this
        await cancel_and_wait(self._publishing)
