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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from gateway.links.connection import LinkError
from gateway.observability import Metrics
from gateway.presence import Presence
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

Ready = Callable[[], bool]
ReadRetained = Callable[[str], Awaitable[bytes | None]]
PublishRetained = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class LateFarewell:
    presence: Presence  # what the connection published while it lived, and its will
    farewell: bytes


def still_ours(retained: bytes | None, presence: Presence) -> bool:
    """Whether the retained document is the one the closed connection left behind."""
    return retained is not None and retained in (presence.online, presence.will)


class LateFarewells:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._pending: dict[str, LateFarewell] = {}  # by presence topic
        self._publishing: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def keep(self, topic: str, presence: Presence, farewell: bytes) -> None:
        self._pending[topic] = LateFarewell(presence, farewell)

    def forget(self, topic: str) -> None:
        """A new connection of the CP opened here: its own documents follow."""
        self._pending.pop(topic, None)

    def publish_soon(
        self, ready: Ready, read: ReadRetained, publish: PublishRetained
    ) -> asyncio.Task[None] | None:
        """Publish what is kept, in the background, while `ready` (the broker answers).

        Returns the task doing it (the one already under way, if any); None: nothing is kept.
        """
        if self._publishing is not None and not self._publishing.done():
            return self._publishing
        if not self._pending or self._closed:
            return None
        self._publishing = asyncio.create_task(self._publish_all(ready, read, publish))
        return self._publishing

    async def _publish_all(
        self, ready: Ready, read: ReadRetained, publish: PublishRetained
    ) -> None:
        counts = {"published": 0, "superseded": 0}
        try:
            for topic in list(self._pending):
                late = self._pending.get(topic)
                if late is None:
                    continue
                retained = await read(topic)
                if not ready():
                    break  # kept for the next time the broker is back
                if self._pending.get(topic) is not late:
                    continue  # the CP connected here again meanwhile
                result = "superseded"
                if still_ours(retained, late.presence):
                    await publish(topic, late.farewell)
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
