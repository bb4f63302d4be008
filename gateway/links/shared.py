"""One subscription per connected charge point, over a few broker connections per gateway.

Far fewer broker connections than the per-CP link: the gateway subscribes to `<cpId>/out` when a
CP connects and unsubscribes when it leaves (never a wildcard over every CP's topic), and a
dictionary hands each message to the right session. The subscriptions of CPs connecting at the
same moment share SUBSCRIBE packets (`batching.py`).

A broker may cap one connection's subscriptions (AWS IoT Core: 50 by default,
`GATEWAY_SHARED_MAX_SUBSCRIPTIONS`): the link then holds a pool of connections, "lanes"
(`lane.py`), opening another one when every lane is full (`pool.py`). A CP lives on one lane for
the whole of its connection, so its frames, claims and presence keep their order, and a lane
that loses the broker applies the grace period to its own CPs only. Lanes stay open once opened:
fleets reconnect in waves, and reopening connections for each wave would cost more (connect
rate quotas, fresh sessions) than an idle connection does.

One connection per CP across replicas is kept with claims (`claims.py`): when a CP connects, its
gateway publishes one on the CP's claim topic, to which every gateway holding that CP is
subscribed (with MQTT 5 "no local": within one gateway the newest connection wins without them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import structlog

from gateway.links.base import BrokerUnavailable, Channel, Deliver, OnLost
from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.channel import CpChannel
from gateway.links.claims import Claim, next_connection_id
from gateway.links.connection import LinkError, Subscription
from gateway.links.farewells import LateFarewells
from gateway.links.lane import Lane
from gateway.links.pool import SUBSCRIPTIONS_PER_CP, choose_lane
from gateway.links.probe import explain_unreachable
from gateway.observability import Metrics
from gateway.presence import Presence

log = structlog.get_logger(__name__)


class SharedLink:
    def __init__(
        self, broker: BrokerSettings, metrics: Metrics, connect: ConnectionFactory
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self._connect = connect
        self._was_ready = False
        self.farewells = LateFarewells(metrics, self._emptiest_ready_lane)
        self.lanes = [Lane(broker, metrics, connect, 0, self._lane_changed, self._gateway_online)]

    @property
    def ready(self) -> bool:
        return any(lane.ready for lane in self.lanes)

    async def start(self) -> None:
        primary = self.lanes[0]
        primary.start()
        self.metrics.shared_connections.set(len(self.lanes))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(primary.connected.wait(), self.broker.mqtt_timeout)
        if not self.ready:
            await explain_unreachable(self.broker, primary.last_error)

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
        if not self.ready:
            raise BrokerUnavailable("the gateway is not connected to the broker")
        claim = Claim(since or time.time(), self.broker.gateway_id, next_connection_id())
        lane = self._lane_for(self.broker.topic_out.format(cp_id=cp_id))
        channel = SharedChannel(
            lane, cp_id, subprotocol, deliver, on_lost, claim, presence, self.farewells
        )
        self.farewells.forget(channel.presence_topic)
        lane.add(channel)
        try:
            if not lane.ready:  # a lane just opened
                await self._wait_for(lane, cp_id)
            await lane.subscribe(channel)
            await lane.connection.publish(channel.claim_topic, channel.claim.encode())
            await channel.announce_online()
        except LinkError as exc:
            lane.in_background(lane.release(channel))
            raise BrokerUnavailable(f"cannot subscribe for {cp_id}: {exc}") from exc
        except asyncio.CancelledError:  # the CP left while its subscription was under way
            lane.in_background(lane.release(channel))
            raise
        return channel

    def _lane_for(self, out_topic: str) -> Lane:
        """The lane with room for this CP; a new one when every lane is full."""
        rooms = [lane.room(out_topic) for lane in self.lanes]
        index = choose_lane(rooms, SUBSCRIPTIONS_PER_CP, self.broker.subscriptions_per_lane)
        if index is not None:
            return self.lanes[index]
        lane = Lane(self.broker, self.metrics, self._connect, len(self.lanes), self._lane_changed)
        self.lanes.append(lane)
        lane.start()
        self.metrics.shared_connections.set(len(self.lanes))
        log.info(
            "broker.lane_opened",
            lane=lane.number,
            cps=sum(each.channels for each in self.lanes),
            max_subscriptions=self.broker.subscriptions_per_lane,
        )
        return lane

    async def _wait_for(self, lane: Lane, cp_id: str) -> None:
        try:
            await asyncio.wait_for(lane.connected.wait(), self.broker.mqtt_timeout)
        except TimeoutError:
            raise LinkError(
                f"broker connection {lane.number} (opened for {cp_id}) did not connect within "
                f"{self.broker.mqtt_timeout} s: {lane.last_error or 'no answer'}"
            ) from None

    def _lane_changed(self) -> None:
        ready = self.ready
        self.metrics.link_ready.set(1 if ready else 0)
        if ready and not self._was_ready:
            log.info("broker.reachable", url=_without_credentials(self.broker.mqtt_url))
        self._was_ready = ready
        self.farewells.publish_soon()

    def _emptiest_ready_lane(self) -> Lane | None:
        # Reading a retained document takes a subscription for a moment: the emptiest lane's.
        ready = [lane for lane in self.lanes if lane.ready]
        return min(ready, key=lambda lane: lane.subscriptions) if ready else None

    def _gateway_online(self) -> None:
        """The primary lane's will may have taken every CP of the gateway offline for status
        consumers: the other lanes' CPs say again that they are online (the primary's do)."""
        for lane in self.lanes[1:]:
            lane.announce_cps()

    async def close(self) -> None:
        await self.farewells.close()
        # The primary says `online: false` for the gateway; the others only disconnect.
        await asyncio.gather(*(lane.close() for lane in self.lanes))
        self.metrics.link_ready.set(0)


class SharedChannel(CpChannel):
    """One CP's channel, on one lane for its whole life."""

    def __init__(
        self,
        lane: Lane,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        claim: Claim,
        presence: Presence | None = None,
        farewells: LateFarewells | None = None,
    ) -> None:
        super().__init__(
            lane.broker,
            lane.metrics,
            cp_id,
            subprotocol,
            deliver,
            on_lost,
            claim,
            presence,
            farewells,
        )
        self.lane = lane
        self.connection = lane.connection
        self.connected = lane.connected
        # MQTT 5 "no local" on claims: a lane does not get its own claims back.
        self.subscriptions = [Subscription(self.out_topic), Subscription(self.claim_topic, True)]
        # Set once the broker granted them: only then are they restored after a reconnect.
        self.subscribed = False

    async def reassert(self) -> None:
        await self.publish_quietly(self.claim_topic, self.claim.encode())

    async def publish_quietly(self, topic: str, payload: bytes) -> None:
        if self.lane.ready:
            await super().publish_quietly(topic, payload)

    def in_background(self, job: Coroutine[Any, Any, None]) -> None:
        self.lane.in_background(job)

    async def announce_online(self) -> None:
        if self.presence is not None and not self.ended.is_set():
            await self.announce(self.presence.online)

    async def close(self, farewell: bytes | None = None) -> None:
        if farewell is not None:
            await self.say_farewell(farewell)
        self.ended.set()
        await self.outbox.close()
        await self.lane.release(self)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else url
