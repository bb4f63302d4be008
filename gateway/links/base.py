"""The link between the gateway and the message broker, seen from one charge point's session.

A `Link` opens one `Channel` per connected charge point. The channel publishes the CP's frames
to its inbound topic and hands every message from its outbound topic to `deliver`, in order.
When the broker side ends the channel for good, the link calls `on_lost` with the reason so the
session can close the CP's WebSocket with the right code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from gateway.presence import Presence

if TYPE_CHECKING:
    from gateway.links.broker import BrokerSettings


class LinkLost(StrEnum):
    # Another client connected with this charge point's identity (another gateway replica
    # has the CP now): close the WebSocket normally and never reconnect this channel.
    TAKEN_OVER = "taken_over"
    # The broker stayed unreachable longer than the grace period.
    BROKER_UNAVAILABLE = "broker_unavailable"


class TakenOver(Exception):
    """A newer connection of the charge point (on another replica) took it while this opened."""


class BrokerUnavailable(Exception):
    """The broker could not take a frame within the grace period; the CP should retry later."""


Deliver = Callable[[bytes], Awaitable[None]]
OnLost = Callable[[LinkLost], None]


class Channel(Protocol):
    async def publish(self, frame: bytes) -> None:
        """Publish one frame from the CP; returns once the broker has it (QoS 1: PUBACK)."""

    def report_undelivered(self, message: bytes, reason: str) -> None:
        """Tell the CSMS, in the background, that a message from the broker missed the CP."""

    async def close(self, farewell: bytes | None = None) -> None:
        """End the channel; it never touches another channel of the same charge point.

        `farewell`, when given, is published (retained) on the CP's presence topic first.
        """


class Link(Protocol):
    broker: BrokerSettings

    @property
    def ready(self) -> bool:
        """Whether new charge points can be accepted (the broker is reachable)."""

    async def start(self) -> None: ...

    async def open_channel(
        self,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        *,
        since: float | None = None,
        presence: Presence | None = None,
    ) -> Channel:
        """Open a channel; returns once outbound messages can be received (SUBACK received).

        `since` is the wall-clock time of the CP's handshake (default: now): across replicas,
        the channel of the newest handshake keeps the CP. `presence` is published (retained)
        on the CP's presence topic once the channel is open, and again after every reconnect;
        its will is left with the broker where the link has one connection per CP. Raises
        `BrokerUnavailable` when the broker cannot be reached.
        """

    async def close(self) -> None: ...
