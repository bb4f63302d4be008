"""Subscribe and unsubscribe requests made in the same loop iteration, sent as one packet.

When thousands of CPs connect at once, one SUBSCRIBE (and one UNSUBSCRIBE when they leave) per
CP costs the gateway and the broker a round of packet building, acknowledgement and hand-off
each; a SUBSCRIBE may carry many topic filters, so the shared link sends them together, up to
the broker's limit per packet (AWS IoT Core: 8).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Topic = TypeVar("Topic")
Request = tuple[list[Topic], "asyncio.Future[None]"]


def packets_for(requests: list[Request[Topic]], max_topics: int) -> list[list[Request[Topic]]]:
    """Group requests, in order, into packets of at most `max_topics` topics.

    A request is never split across packets, so it succeeds or fails as a whole; a request
    larger than the limit travels alone.
    """
    packets: list[list[Request[Topic]]] = []
    current: list[Request[Topic]] = []
    size = 0
    for request in requests:
        topics = len(request[0])
        if current and size + topics > max_topics:
            packets.append(current)
            current, size = [], 0
        current.append(request)
        size += topics
    if current:
        packets.append(current)
    return packets


class TopicBatcher(Generic[Topic]):
    """Coalesces the topic requests of one loop iteration into as few packets as allowed."""

    def __init__(self, send: Callable[[list[Topic]], Awaitable[None]], max_topics: int) -> None:
        self._send = send
        self._max_topics = max_topics
        self._waiting: list[Request[Topic]] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def request(self, topics: list[Topic]) -> None:
        """Return once the broker acknowledged `topics`; raise what the transport raised."""
        loop = asyncio.get_running_loop()
        acknowledged: asyncio.Future[None] = loop.create_future()
        self._waiting.append((topics, acknowledged))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        await acknowledged

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, []
        for packet in packets_for(waiting, self._max_topics):
            task = asyncio.create_task(self._send_packet(packet))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_packet(self, packet: list[Request[Topic]]) -> None:
        try:
            await self._send([topic for topics, _ in packet for topic in topics])
        except Exception as exc:
            if len(packet) == 1:
                _settle(packet[0][1], exc)
            else:  # one refused topic must not fail the others: ask again one request at a time
                for request in packet:
                    await self._send_packet([request])
            return
        for _, acknowledged in packet:
            _settle(acknowledged, None)


def _settle(acknowledged: asyncio.Future[None], error: Exception | None) -> None:
    if acknowledged.done():  # the requester was cancelled meanwhile
        return
    if error is None:
        acknowledged.set_result(None)
    else:
        acknowledged.set_exception(error)
