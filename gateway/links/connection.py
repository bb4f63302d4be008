"""One MQTT connection to the broker, whatever the client library underneath.

Every link policy (the per-CP channel, the shared link, the probe, the Thing-events watcher) sits
on this interface; `aiomqtt_connection.py` and `crt_connection.py` implement it once each, so a
rule about reconnecting, stalls or takeovers is written once, above both.

A connection reports to its `ConnectionEvents` on the asyncio loop: `connection_up` once the
broker accepted it, `connection_down` with the reason when it ends (never for `stop()`), and
`message` for every message received. With `reconnect` on it connects again by itself after
every drop (resuming the session), with back-off capped at `ConnectionOptions.max_delay`; off,
it stays down until `start()` is called again.

A broker that stops answering with the socket open (frozen, overloaded, a half-open TCP path)
is detected by the operations themselves: an acknowledgement that does not come within the
timeout ends the connection as `STALLED`, so it never hangs until the keep-alive expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")

# MQTT 5 DISCONNECT reason code sent by a broker when another client connected with the same
# client identifier ("Session taken over").
SESSION_TAKEN_OVER = 0x8E
# MQTT 5 reason codes from this one on are failures.
FIRST_FAILURE = 0x80


class LinkError(Exception):
    """An MQTT operation failed (not connected, connection lost, or no acknowledgement)."""


class NotConnected(LinkError):
    """The operation was not sent: the connection is down (so it cannot be a duplicate)."""


class BrokerRefused(LinkError):
    """The broker answered with a failure reason code (e.g. NOT_AUTHORIZED): retrying won't help."""


class DownReason(StrEnum):
    # DISCONNECT 0x8E: another client connected with this client id.
    TAKEN_OVER = "taken_over"
    # The broker stopped acknowledging (an operation timed out); the connection was dropped.
    STALLED = "stalled"
    # The connection closed or failed without saying why: a broker that went away, or (with
    # Mosquitto 2.0, which only closes the socket) another client that took the client id.
    DROPPED = "dropped"


class Down(NamedTuple):
    reason: DownReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


class Subscription(NamedTuple):
    topic: str
    # MQTT 5 "no local": the broker does not send back what this connection published.
    no_local: bool = False


UserProperties = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Will:
    """What the broker publishes for the connection when it ends without a DISCONNECT."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class ConnectionOptions:
    client_id: str
    # The first connection starts a clean session; every later one resumes it.
    clean_start: bool = True
    # Seconds the broker keeps the session (subscriptions, queued messages) after a drop.
    session_expiry: int = 0
    reconnect: bool = True
    # Back-off between attempts: from `min_delay`, doubling, never more than `max_delay`.
    min_delay: float = 0.1
    max_delay: float = 1.0
    # Many QoS 1 messages in flight at once (the shared link carries every CP).
    receive_maximum: int | None = None
    will: Will | None = None


class ConnectionEvents(Protocol):
    def connection_up(self) -> None: ...

    def connection_down(self, down: Down) -> None: ...

    def message(self, topic: str, payload: bytes) -> None: ...


class BrokerConnection(Protocol):
    """One MQTT 5 client connection; see the module's docstring."""

    client_id: str
    # Topic filters per SUBSCRIBE packet the broker accepts (AWS IoT Core: 8).
    max_topics_per_packet: int

    @property
    def up(self) -> bool: ...

    def start(self) -> None:
        """Connect in the background (again, after a drop with `reconnect` off)."""

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: UserProperties = ()
    ) -> None:
        """Publish; with QoS 1, returns once the broker acknowledged. Raises `LinkError`."""

    async def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        """Returns once every topic is granted; raises `BrokerRefused` naming a refused one."""

    async def unsubscribe(self, topics: Sequence[str]) -> None: ...

    async def stop(self) -> None:
        """Disconnect and stop reconnecting; the session ends unless it has an expiry."""


async def acknowledged(
    operation: Awaitable[T], what: str, within: float, stall: Callable[[str], None]
) -> T:
    """Await an operation; past `within` seconds the connection is stalled (`stall`) and ends.

    For operations that are coroutines (aiomqtt's); `Acknowledgements` is the cheaper way for
    those that complete a future (the CRT's).
    """
    try:
        async with asyncio.timeout(within):
            return await operation
    except TimeoutError:
        stall(f"no acknowledgement of {what} within {within} s")
        raise LinkError(f"the broker did not acknowledge {what} in time") from None


class Acknowledgements:
    """The deadlines of one client's operations in flight, kept by a single timer.

    What `acknowledged` does for one operation, for many at a fraction of the cost: a timer per
    publish cost about a tenth of the gateway's CPU per relayed call. Operations are registered
    in the order they start, so the oldest one still waiting decides when the timer fires. Past
    its deadline every operation still waiting fails with `LinkError`; `stall` ends the client.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, within: float, stall: Callable[[str], None]
    ) -> None:
        self._loop = loop
        self._within = within
        self._stall = stall
        self._waiting: dict[asyncio.Future[Any], tuple[float, str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def wait(self, acknowledgement: asyncio.Future[T], what: str) -> T:
        """Await `acknowledgement`, completed by the client (its result or its error)."""
        deadline = self._loop.time() + self._within
        self._waiting[acknowledgement] = (deadline, what)
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check)
        try:
            return await acknowledgement
        finally:
            del self._waiting[acknowledgement]

    def close(self) -> None:
        """The client is stopped: what it still owes will never count; its waits end now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for acknowledgement in self._waiting:
            if not acknowledgement.done():
                acknowledgement.set_exception(LinkError("the connection was stopped"))

    def _check(self) -> None:
        self._timer = None
        now = self._loop.time()
        for deadline, what in self._waiting.values():  # the oldest first
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._check)
                return
            for acknowledgement, (_, each) in self._waiting.items():
                if not acknowledgement.done():
                    acknowledgement.set_exception(
                        LinkError(f"the broker did not acknowledge {each} in time")
                    )
            self._stall(f"no acknowledgement of {what} within {self._within} s")
            return


def hand_over(events: ConnectionEvents, client_id: str, topic: str, payload: bytes) -> None:
    """Report a received message; one message must never end the connection's reader."""
    try:
        events.message(topic, payload)
    except Exception:
        log.exception("broker.message_failed", client_id=client_id, topic=topic)
