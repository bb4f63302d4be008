"""One broker connection of the shared link, and the charge points it carries.

A lane subscribes for its CPs (their SUBSCRIBE and UNSUBSCRIBE requests batched per packet),
hands each message to the CP it is for, subscribes again after a reconnect, checks that the
broker still answers, and ends its own CPs when the broker stays away longer than the grace
period; another lane's loss touches none of them.

The first lane (the primary) also speaks for the gateway instance: it carries the will on the
gateway's status topic and publishes `online` there. Only it does, because a status consumer
(the processor) marks every CP naming the instance offline on that will: a lane that drops while
the gateway lives must not take the CPs of the other lanes with it. When the process dies, every
lane drops, the primary's will included. When the primary is back after a drop, every lane
publishes its CPs' presence again, so that what the will took offline is online again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from gateway.links.base import LinkLost
from gateway.links.batching import TopicBatcher
from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.claims import decode_claim
from gateway.links.connection import (
    BrokerRefused,
    ConnectionOptions,
    Down,
    LinkError,
    Will,
)
from gateway.links.pool import SUBSCRIPTIONS_PER_CP, LaneRoom
from gateway.links.probe import check_forever
from gateway.links.retained import RetainedReader
from gateway.observability import Metrics
from gateway.presence import gateway_status
from gateway.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.links.shared import SharedChannel

log = structlog.get_logger(__name__)

# A lane carries many CPs: let many QoS 1 messages be in flight both ways.
RECEIVE_MAXIMUM = 65535
# CPs whose presence is published at once after a reconnect.
ANNOUNCE_BATCH = 500


def lane_client_id(broker: BrokerSettings, number: int) -> str:
    """The primary keeps the shared link's historical client id; the others add their number."""
    client_id = broker.client_id("shared")
    return client_id if number == 0 else f"{client_id}:{number}"


class Lane:
    def __init__(
        self,
        broker: BrokerSettings,
        metrics: Metrics,
        connect: ConnectionFactory,
        number: int,
        on_change: Callable[[], None],
        on_gateway_online: Callable[[], None] | None = None,
    ) -> None:
        """`on_change`: the lane became ready or unready. `on_gateway_online` (the primary's):
        the gateway's `online: true` was published after a (re)connect."""
        self.broker = broker
        self.metrics = metrics
        self.number = number
        self._on_change = on_change
        self._on_gateway_online = on_gateway_online
        self._channels: dict[str, SharedChannel] = {}  # by `/out` topic
        self._by_claim_topic: dict[str, SharedChannel] = {}
        # Topics of CPs that left while the lane was down: still in the broker's session.
        self._stale: set[str] = set()
        will = None
        if self.primary:
            # Presence documents name this gateway instance: if it vanishes, they are stale.
            will = Will(broker.gateway_topic, self._status(online=False))
        self.connection = connect(
            ConnectionOptions(
                lane_client_id(broker, number),
                # Keep the broker session through a short outage so /out messages wait for us.
                session_expiry=int(broker.broker_grace),
                receive_maximum=RECEIVE_MAXIMUM,
                will=will,
            ),
            self,
        )
        self._retained = RetainedReader(self.connection)
        max_topics = self.connection.max_topics_per_packet
        self._subscribing = TopicBatcher(self.connection.subscribe, max_topics)
        self._unsubscribing = TopicBatcher(self.connection.unsubscribe, max_topics)
        self.connected = asyncio.Event()
        self._connected_before = False
        self.last_error: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._checker: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.TimerHandle | None = None

    @property
    def primary(self) -> bool:
        return self.number == 0

    @property
    def ready(self) -> bool:
        return self.connected.is_set()

    @property
    def channels(self) -> int:
        return len(self._channels)

    def holds(self, out_topic: str) -> bool:
        return out_topic in self._channels

    def room(self, out_topic: str) -> LaneRoom:
        # A lane that never connected yet accepts CPs: they wait for its first connection.
        accepting = self.ready or not self._connected_before
        return LaneRoom(self.subscriptions, accepting, self.holds(out_topic))

    @property
    def subscriptions(self) -> int:
        return len(self._channels) * SUBSCRIPTIONS_PER_CP + len(self._stale)

    def start(self) -> None:
        self.connection.start()
        self._checker = asyncio.create_task(check_forever(self.connection, self.broker))

    # -- channels ---------------------------------------------------------------------------

    def add(self, channel: SharedChannel) -> None:
        """Carry `channel` from now on (a channel of the same CP here is replaced)."""
        self._channels[channel.out_topic] = channel
        self._by_claim_topic[channel.claim_topic] = channel
        self._stale.difference_update((channel.out_topic, channel.claim_topic))

    async def subscribe(self, channel: SharedChannel) -> None:
        """Subscribe for an added channel; raises `LinkError` (then the channel is dropped)."""
        try:
            await self._subscribing.request(channel.subscriptions)
        except BrokerRefused as exc:
            self._forget(channel)
            self._refused(exc)
            raise
        except LinkError:
            # The broker may have granted them before the connection failed.
            if self._forget(channel):
                self._stale.update((channel.out_topic, channel.claim_topic))
            raise
        channel.subscribed = True

    async def release(self, channel: SharedChannel) -> None:
        """Unsubscribe for a closed channel, unless a newer channel of its CP took its place."""
        if not self._forget(channel):
            return
        topics = [channel.out_topic, channel.claim_topic]
        if not self.ready:
            self._stale.update(topics)  # unsubscribed after the reconnect
            return
        try:
            await self._unsubscribing.request(topics)
        except LinkError:
            self._stale.update(topics)

    def _refused(self, exc: BrokerRefused) -> None:
        log.error(
            "broker.subscription_refused",
            lane=self.number,
            subscriptions=self.subscriptions,
            error=str(exc),
            hint="if the broker caps subscriptions per connection, set "
            "GATEWAY_SHARED_MAX_SUBSCRIPTIONS to its quota (or lower); else check that the "
            "broker's policy allows subscribing to the CP's /out and claim topics",
        )

    def _forget(self, channel: SharedChannel) -> bool:
        if self._channels.get(channel.out_topic) is not channel:
            return False
        del self._channels[channel.out_topic]
        self._by_claim_topic.pop(channel.claim_topic, None)
        return True

    # -- publishing -------------------------------------------------------------------------

    async def read_retained(self, topic: str) -> bytes | None:
        """The message retained on `topic`, or None (none, or the broker cannot be asked)."""
        return await self._retained.read(topic) if self.ready else None

    async def publish_retained(self, topic: str, payload: bytes) -> None:
        await self.connection.publish(topic, payload, retain=True)

    def in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _status(self, online: bool) -> bytes:
        return gateway_status(self.broker.gateway_id, self.broker.nonce, online)

    async def _announce_all(self) -> None:
        """After a (re)connect: the gateway is online, and so is every CP of this lane."""
        if self.primary:
            try:
                await self.connection.publish(
                    self.broker.gateway_topic, self._status(online=True), retain=True
                )
            except LinkError:
                return
            if self._on_gateway_online is not None:
                self._on_gateway_online()
        await self._announce_cps()

    def announce_cps(self) -> None:
        """Publish every CP's presence again, in the background (after the gateway's will)."""
        if self.ready:
            self.in_background(self._announce_cps())

    async def _announce_cps(self) -> None:
        channels = list(self._channels.values())
        with contextlib.suppress(LinkError):
            for start in range(0, len(channels), ANNOUNCE_BATCH):
                await asyncio.gather(
                    *(each.announce_online() for each in channels[start : start + ANNOUNCE_BATCH])
                )

    async def close(self) -> None:
        if self.primary and self.ready:
            with contextlib.suppress(LinkError):
                await self.connection.publish(
                    self.broker.gateway_topic, self._status(online=False), retain=True
                )
        await cancel_and_wait(self._checker)
        for task in list(self._background):
            await cancel_and_wait(task)
        await self.connection.stop()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self.connected.clear()
        self._on_change()

    # -- connection events ------------------------------------------------------------------

    def connection_up(self) -> None:
        self.in_background(self._restore())

    async def _restore(self) -> None:
        """Drop what CPs that left no longer need, subscribe again for the others, then serve."""
        stale = sorted(self._stale)
        subscriptions = [
            subscription
            for channel in list(self._channels.values())
            if channel.subscribed
            for subscription in channel.subscriptions
        ]
        batch = self.connection.max_topics_per_packet
        try:
            for start in range(0, len(stale), batch):
                await self.connection.unsubscribe(stale[start : start + batch])
            self._stale.difference_update(stale)
            # Before the subscriptions: a broker with a quota counts the stale ones too.
            for start in range(0, len(subscriptions), batch):
                await self.connection.subscribe(subscriptions[start : start + batch])
        except BrokerRefused as exc:
            self._refused(exc)  # the lane stays unready; its CPs end with the grace period
            return
        except LinkError as exc:
            log.warning("broker.resubscribe_failed", lane=self.number, error=str(exc))
            return  # a drop follows, and another attempt
        if subscriptions:
            log.info("broker.resubscribed", lane=self.number, channels=len(subscriptions) // 2)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if self._connected_before:
            self.metrics.link_reconnects.inc()
        self._connected_before = True
        self.in_background(self._announce_all())
        self.connected.set()
        self._on_change()

    def connection_down(self, down: Down) -> None:
        self.last_error = str(down)
        if self.ready:
            log.warning(
                "broker.lost", lane=self.number, channels=self.channels, error=self.last_error
            )
        self.connected.clear()
        self._on_change()
        if self._grace_timer is None and self._channels:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self.broker.broker_grace, self._grace_expired)

    def message(self, topic: str, payload: bytes) -> None:
        channel = self._channels.get(topic)
        if channel is not None:
            channel.outbox.put(payload)
            return
        claimant = self._by_claim_topic.get(topic)
        if claimant is not None:
            claimant.consider(decode_claim(payload))
            return
        self._retained.message(topic, payload)

    def _grace_expired(self) -> None:
        self._grace_timer = None
        if self.ready:
            return
        channels = list(self._channels.values())
        log.error("broker.grace_expired", lane=self.number, channels=len(channels))
        for channel in channels:
            channel.end(LinkLost.BROKER_UNAVAILABLE)
