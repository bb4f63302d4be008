"""What a charge point's channel is on either link: its topics, claim, outbox, and how it ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway.links.base import Deliver, LinkLost, OnLost
from gateway.links.claims import Claim
from gateway.links.connection import BrokerConnection, LinkError
from gateway.links.farewells import LateFarewells
from gateway.links.grace import publish_within_grace
from gateway.links.outbox import Outbox
from gateway.notices import undelivered
from gateway.observability import Metrics
from gateway.presence import Presence

if TYPE_CHECKING:
    from gateway.links.broker import BrokerSettings


class CpChannel:
    """The part both links share; a subclass sets `connection` and `connected`, and says how a
    claim is asserted again and where background work runs."""

    connection: BrokerConnection
    # Set while the connection is up and subscribed for this CP.
    connected: asyncio.Event

    def __init__(
        self,
        broker: BrokerSettings,
        metrics: Metrics,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        claim: Claim,
        presence: Presence | None,
        farewells: LateFarewells | None = None,
    ) -> None:
        """`farewells`: where an offline document the broker cannot take at close waits."""
        self.broker = broker
        self.metrics = metrics
        self.cp_id = cp_id
        self.claim = claim
        self.presence = presence
        self.in_topic = broker.topic_in.format(cp_id=cp_id)
        self.out_topic = broker.topic_out.format(cp_id=cp_id)
        self.claim_topic = broker.topic_claim.format(cp_id=cp_id)
        self.presence_topic = broker.topic_presence.format(cp_id=cp_id)
        self.undelivered_topic = broker.topic_undelivered.format(cp_id=cp_id)
        self.properties = (("subprotocol", subprotocol),)
        self.outbox = Outbox(
            cp_id, deliver, broker.out_queue_limit, metrics, on_undelivered=self.report_undelivered
        )
        self.ended = asyncio.Event()
        self._on_lost = on_lost
        self._farewells = farewells

    async def publish(self, frame: bytes) -> None:
        await publish_within_grace(
            lambda: self.connection.publish(self.in_topic, frame, properties=self.properties),
            self.connected,
            self.ended,
            self.broker.broker_grace,
            on_resend=self.metrics.frames_resent.inc,
        )

    def report_undelivered(self, message: bytes, reason: str) -> None:
        notice = undelivered(self.cp_id, message, reason, time.time())
        self.in_background(self.publish_quietly(self.undelivered_topic, notice))

    async def publish_quietly(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(LinkError):
            await self.connection.publish(topic, payload)

    async def announce(self, document: bytes) -> None:
        """Publish a presence document on the CP's presence topic, retained."""
        await self.connection.publish(self.presence_topic, document, retain=True)

    async def say_farewell(self, farewell: bytes) -> None:
        """Publish the CP's offline document, or keep it for when the broker is back."""
        if self.connected.is_set():
            with contextlib.suppress(LinkError):
                await self.announce(farewell)
                return
        if self.presence is not None and self._farewells is not None:
            self._farewells.keep(self.presence_topic, self.presence, farewell)

    def consider(self, claim: Claim | None) -> None:
        """React to a claim on this CP's claim topic."""
        if claim is None or claim == self.claim or self.ended.is_set():
            return
        if claim > self.claim:
            self.end(LinkLost.TAKEN_OVER)
        else:  # an older holder announced itself after this one: tell it again that it lost
            self.in_background(self.reassert())

    async def reassert(self) -> None:
        raise NotImplementedError

    def end(self, reason: LinkLost) -> None:
        if self.ended.is_set():
            return
        self.ended.set()
        self.metrics.link_lost.labels(reason=reason.value).inc()
        self._on_lost(reason)

    def in_background(self, job: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError
