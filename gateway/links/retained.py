"""Reading the message retained on a topic through a broker connection: subscribe, take the
retained message that follows the SUBACK, unsubscribe."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.links.connection import BrokerConnection, LinkError, Subscription

# A retained message arrives right after the SUBACK; wait this long for one that may exist.
RETAINED_WAIT = 1.0


class RetainedReader:
    """Reads on one connection, whose owner hands every message to `message` first."""

    def __init__(self, connection: BrokerConnection) -> None:
        self._connection = connection
        self._reads: dict[str, asyncio.Future[bytes]] = {}

    async def read(self, topic: str) -> bytes | None:
        """The message retained on `topic`, or None (none, or the broker cannot be asked)."""
        if topic in self._reads:  # another reader asks already: share its answer
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                return await asyncio.wait_for(asyncio.shield(self._reads[topic]), RETAINED_WAIT)
            return None
        waiter = self._reads[topic] = asyncio.get_running_loop().create_future()
        try:
            await self._connection.subscribe([Subscription(topic)])
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(waiter, RETAINED_WAIT)
            return None
        except LinkError:
            return None
        finally:
            del self._reads[topic]
            with contextlib.suppress(LinkError):
                await self._connection.unsubscribe([topic])

    def message(self, topic: str, payload: bytes) -> bool:
        """Take `payload` if a read waits for `topic`; False: the message is someone else's."""
        waiter = self._reads.get(topic)
        if waiter is None:
            return False
        if not waiter.done():
            waiter.set_result(payload)
        return True
