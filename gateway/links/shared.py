"""One MQTT connection per gateway, one subscription per connected charge point.

Far fewer broker connections than the per-CP link: the gateway subscribes to `<cpId>/out` when a
CP connects and unsubscribes when it leaves (never a wildcard over every CP's topic), and a
dictionary hands each message to the right session. The subscriptions of CPs connecting at the
same moment share SUBSCRIBE packets (`batching.py`).

One connection per CP across replicas is kept with claims: when a CP connects, its gateway
publishes `{"gateway", "connection", "at"}` on the CP's claim topic, to which every gateway
holding that CP is subscribed (with MQTT 5 "no local": a gateway does not get its own claims
back; within one gateway the newest connection wins without them). The newest claim wins
(ordered by time, then gateway id, then connection id, so every replica takes the same decision);
a holder that sees a newer claim closes its connection with 1000, and a holder that sees an older
one re-publishes its own so the other side learns it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import structlog

from gateway.links.base import BrokerUnavailable, Channel, Deliver, LinkLost, OnLost
from gateway.links.batching import TopicBatcher
from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.claims import Claim, decode_claim, next_connection_id
from gateway.links.connection import (
    ConnectionOptions,
    Down,
    LinkError,
    Subscription,
    Will,
    describe,
)
from gateway.links.grace import publish_within_grace
from gateway.links.outbox import Outbox
from gateway.links.probe import check_forever, explain_unreachable
from gateway.notices import undelivered
from gateway.observability import Metrics
from gateway.presence import Presence, gateway_status
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

# The shared connection carries every CP: let many QoS 1 messages be in flight both ways.
RECEIVE_MAXIMUM = 65535


class SharedLink:
    def __init__(
        self, broker: BrokerSettings, metrics: Metrics, connect: ConnectionFactory
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self._by_out_topic: dict[str, SharedChannel] = {}
        self._by_claim_topic: dict[str, SharedChannel] = {}
        self.connection = connect(
            ConnectionOptions(
                broker.client_id("shared"),
                # Keep the broker session through a short outage so /out messages wait for us.
                session_expiry=int(broker.broker_grace),
                receive_maximum=RECEIVE_MAXIMUM,
                # Presence documents name this gateway instance: if it vanishes, they are stale.
                will=Will(broker.gateway_topic, self._status(online=False)),
                no_delay=True,
            ),
            self,
        )
        max_topics = self.connection.max_topics_per_packet
        self._subscribing = TopicBatcher(self.connection.subscribe, max_topics)
        self._unsubscribing = TopicBatcher(self.connection.unsubscribe, max_topics)
        self.connected = asyncio.Event()
        self._connected_before = False
        self._last_error: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._checker: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        return self.connected.is_set()

    async def start(self) -> None:
        self.connection.start()
        self._checker = asyncio.create_task(
            check_forever(self.connection, self.broker.check_topic, self.broker.mqtt_timeout / 2)
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), self.broker.mqtt_timeout)
        if not self.ready:
            await explain_unreachable(self.broker, self._last_error)

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
        channel = SharedChannel(self, cp_id, subprotocol, deliver, on_lost, claim, presence)
        self._by_out_topic[channel.out_topic] = channel
        self._by_claim_topic[channel.claim_topic] = channel
        try:
            await self._subscribing.request(channel.subscriptions)
            await self.connection.publish(channel.claim_topic, channel.claim.encode())
            await channel.announce_online()
        except LinkError as exc:
            self._forget(channel)
            raise BrokerUnavailable(f"cannot subscribe for {cp_id}: {exc}") from exc
        except asyncio.CancelledError:  # the CP left while its subscription was under way
            self._in_background(self.release(channel))
            raise
        return channel

    async def release(self, channel: SharedChannel) -> None:
        """Unsubscribe for a closed channel, unless a newer channel of the same CP took over."""
        if not self._forget(channel) or not self.ready:
            return
        with contextlib.suppress(LinkError):
            await self._unsubscribing.request([channel.out_topic, channel.claim_topic])

    def _forget(self, channel: SharedChannel) -> bool:
        if self._by_out_topic.get(channel.out_topic) is not channel:
            return False
        del self._by_out_topic[channel.out_topic]
        self._by_claim_topic.pop(channel.claim_topic, None)
        return True

    def _status(self, online: bool) -> bytes:
        return gateway_status(self.broker.gateway_id, self.broker.nonce, online)

    async def _announce_all(self) -> None:
        """After a reconnect: the gateway is online, and so is every CP it holds."""
        with contextlib.suppress(LinkError):
            await self.connection.publish(
                self.broker.gateway_topic, self._status(online=True), retain=True
            )
            channels = list(self._by_out_topic.values())
            for start in range(0, len(channels), 500):
                await asyncio.gather(
                    *(each.announce_online() for each in channels[start : start + 500])
                )

    def publish_in_background(self, topic: str, payload: bytes) -> None:
        self._in_background(self._publish_quietly(topic, payload))

    async def _publish_quietly(self, topic: str, payload: bytes) -> None:
        if self.ready:
            with contextlib.suppress(LinkError):
                await self.connection.publish(topic, payload)

    def reassert(self, channel: SharedChannel) -> None:
        """Publish the channel's claim again, in the background."""
        self._in_background(self._publish_claim(channel))

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_claim(self, channel: SharedChannel) -> None:
        if self.ready:
            with contextlib.suppress(LinkError):
                await self.connection.publish(channel.claim_topic, channel.claim.encode())

    async def close(self) -> None:
        if self.ready:
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
        self.metrics.link_ready.set(0)

    # -- connection events -----------------------------------------------------------------

    def connection_up(self) -> None:
        self._in_background(self._restore())

    async def _restore(self) -> None:
        """Subscribe again for every connected CP, then count as ready."""
        subscriptions = [
            subscription
            for channel in list(self._by_out_topic.values())
            for subscription in channel.subscriptions
        ]
        batch = self.connection.max_topics_per_packet
        try:
            for start in range(0, len(subscriptions), batch):
                await self.connection.subscribe(subscriptions[start : start + batch])
        except LinkError as exc:
            log.warning("broker.resubscribe_failed", error=str(exc))  # a drop follows
            return
        if subscriptions:
            log.info("broker.resubscribed", channels=len(subscriptions) // 2)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if self._connected_before:
            self.metrics.link_reconnects.inc()
        self._connected_before = True
        self._in_background(self._announce_all())
        self.connected.set()
        self.metrics.link_ready.set(1)
        log.info("broker.reachable", url=_without_credentials(self.broker.mqtt_url))

    def connection_down(self, down: Down) -> None:
        self._last_error = describe(down)
        if self.ready:
            log.warning("broker.lost", channels=len(self._by_out_topic), error=self._last_error)
        self.connected.clear()
        self.metrics.link_ready.set(0)
        if self._grace_timer is None and self._by_out_topic:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self.broker.broker_grace, self._grace_expired)

    def message(self, topic: str, payload: bytes) -> None:
        channel = self._by_out_topic.get(topic)
        if channel is not None:
            channel.outbox.put(payload)
            return
        claimant = self._by_claim_topic.get(topic)
        if claimant is not None:
            claimant.consider(decode_claim(payload))

    def _grace_expired(self) -> None:
        self._grace_timer = None
        if self.ready:
            return
        channels = list(self._by_out_topic.values())
        log.error("broker.grace_expired", channels=len(channels))
        for channel in channels:
            channel.end(LinkLost.BROKER_UNAVAILABLE)


class SharedChannel:
    def __init__(
        self,
        link: SharedLink,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        claim: Claim,
        presence: Presence | None = None,
    ) -> None:
        broker = link.broker
        self._link = link
        self._presence = presence
        self.presence_topic = broker.topic_presence.format(cp_id=cp_id)
        self._on_lost = on_lost
        self.cp_id = cp_id
        self.claim = claim
        self.in_topic = broker.topic_in.format(cp_id=cp_id)
        self.out_topic = broker.topic_out.format(cp_id=cp_id)
        self.claim_topic = broker.topic_claim.format(cp_id=cp_id)
        # MQTT 5 "no local" on claims: a gateway does not get its own claims back.
        self.subscriptions = [Subscription(self.out_topic), Subscription(self.claim_topic, True)]
        self._undelivered_topic = broker.topic_undelivered.format(cp_id=cp_id)
        self.outbox = Outbox(
            cp_id,
            deliver,
            broker.out_queue_limit,
            link.metrics,
            on_undelivered=self.report_undelivered,
        )
        self._properties = (("subprotocol", subprotocol),)
        self._ended = asyncio.Event()

    async def publish(self, frame: bytes) -> None:
        connection = self._link.connection
        await publish_within_grace(
            lambda: connection.publish(self.in_topic, frame, properties=self._properties),
            self._link.connected,
            self._ended,
            self._link.broker.broker_grace,
            on_resend=self._link.metrics.frames_resent.inc,
        )

    def consider(self, claim: Claim | None) -> None:
        """React to a claim on this CP's claim topic."""
        if claim is None or claim == self.claim or self._ended.is_set():
            return
        if claim > self.claim:
            self.end(LinkLost.TAKEN_OVER)
        else:
            # An older holder announced itself after ours: tell it again that it lost.
            self._link.reassert(self)

    def end(self, reason: LinkLost) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        self._link.metrics.link_lost.labels(reason=reason.value).inc()
        self._on_lost(reason)

    def report_undelivered(self, message: bytes, reason: str) -> None:
        notice = undelivered(self.cp_id, message, reason, time.time())
        self._link.publish_in_background(self._undelivered_topic, notice)

    async def announce_online(self) -> None:
        if self._presence is not None and not self._ended.is_set():
            await self._announce(self._presence.online)

    async def _announce(self, document: bytes) -> None:
        await self._link.connection.publish(self.presence_topic, document, retain=True)

    async def close(self, farewell: bytes | None = None) -> None:
        if farewell is not None and self._link.ready:
            with contextlib.suppress(LinkError):
                await self._announce(farewell)
        self._ended.set()
        await self.outbox.close()
        await self._link.release(self)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else url
