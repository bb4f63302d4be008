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
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import structlog

from gateway import strict_json
from gateway.links.base import BrokerUnavailable, Channel, Deliver, LinkLost, OnLost
from gateway.links.batching import TopicBatcher
from gateway.links.broker_url import region_of_iot_endpoint
from gateway.links.grace import publish_within_grace
from gateway.observability import Metrics
from gateway.settings import Settings

log = structlog.get_logger(__name__)

# Unique per connection of this process, and across restarts of a gateway with a fixed id;
# cheaper than a random UUID on the connect path.
_PROCESS_STARTED = f"{time.time_ns():x}"
_connection_numbers = itertools.count(1)


def next_connection_id() -> str:
    return f"{_PROCESS_STARTED}.{next(_connection_numbers)}"


@dataclass(frozen=True, order=True)
class Claim:
    """Who holds a charge point; a greater claim is newer and wins."""

    at: float
    gateway: str
    connection: str

    def encode(self) -> bytes:
        return json.dumps(
            {"gateway": self.gateway, "connection": self.connection, "at": self.at}
        ).encode()


def decode_claim(payload: bytes) -> Claim | None:
    try:
        fields = strict_json.decode_bytes(payload)
        return Claim(float(fields["at"]), str(fields["gateway"]), str(fields["connection"]))
    except (ValueError, TypeError, KeyError):
        return None


# Topic filters per SUBSCRIBE packet: AWS IoT Core accepts at most 8 (a hard limit).
AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE = 8
TOPICS_PER_SUBSCRIBE = 500


def topics_per_subscribe(broker_host: str) -> int:
    if region_of_iot_endpoint(broker_host) is not None:
        return AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE
    return TOPICS_PER_SUBSCRIBE


class Subscription(NamedTuple):
    topic: str
    # MQTT 5 "no local": the broker does not send back what this connection published (the
    # gateway's own claims; within one gateway the newest connection wins without them).
    no_local: bool = False


class SharedTransport(Protocol):
    """One broker connection for the whole gateway; it reconnects by itself.

    It reports to its `TransportEvents` from the asyncio loop: `transport_up` once connected
    (awaited before the link is ready, so subscriptions are restored first), `transport_down`
    when the connection drops, and `transport_message` for every message received.
    """

    errors: tuple[type[Exception], ...]
    max_topics_per_packet: int

    def start(self) -> None: ...

    async def subscribe(self, subscriptions: list[Subscription]) -> None: ...

    async def unsubscribe(self, topics: list[str]) -> None: ...

    async def publish(self, topic: str, payload: bytes, subprotocol: str | None) -> None: ...

    async def close(self) -> None: ...


class TransportEvents(Protocol):
    async def transport_up(self, reconnected: bool) -> None: ...

    def transport_down(self) -> None: ...

    def transport_message(self, topic: str, payload: bytes) -> None: ...


TransportFactory = Callable[[Settings, str, TransportEvents], SharedTransport]


class SharedLink:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        gateway_id: str,
        transport: TransportFactory,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._gateway_id = gateway_id
        self._by_out_topic: dict[str, SharedChannel] = {}
        self._by_claim_topic: dict[str, SharedChannel] = {}
        self._transport = transport(settings, f"ocpp-gateway-{gateway_id}", self)
        max_topics = self._transport.max_topics_per_packet
        self._subscribing = TopicBatcher(self._transport.subscribe, max_topics)
        self._unsubscribing = TopicBatcher(self._transport.unsubscribe, max_topics)
        self.settings = settings
        self.metrics = metrics
        self.connected = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._grace_timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        return self.connected.is_set()

    @property
    def transport(self) -> SharedTransport:
        return self._transport

    async def start(self) -> None:
        self._transport.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), self._settings.mqtt_timeout)
        if not self.ready:
            log.warning("broker.unreachable", url=_without_credentials(self._settings.mqtt_url))

    async def open_channel(
        self, cp_id: str, subprotocol: str, deliver: Deliver, on_lost: OnLost
    ) -> Channel:
        if not self.ready:
            raise BrokerUnavailable("the gateway is not connected to the broker")
        channel = SharedChannel(
            self,
            cp_id,
            subprotocol,
            deliver,
            on_lost,
            claim=Claim(time.time(), self._gateway_id, next_connection_id()),
        )
        self._by_out_topic[channel.out_topic] = channel
        self._by_claim_topic[channel.claim_topic] = channel
        try:
            await self._subscribing.request(channel.subscriptions)
            await self._transport.publish(channel.claim_topic, channel.claim.encode(), None)
        except self._transport.errors as exc:
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
        with contextlib.suppress(*self._transport.errors):
            await self._unsubscribing.request([channel.out_topic, channel.claim_topic])

    def _forget(self, channel: SharedChannel) -> bool:
        if self._by_out_topic.get(channel.out_topic) is not channel:
            return False
        del self._by_out_topic[channel.out_topic]
        self._by_claim_topic.pop(channel.claim_topic, None)
        return True

    def reassert(self, channel: SharedChannel) -> None:
        """Publish the channel's claim again, in the background."""
        self._in_background(self._publish_claim(channel))

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_claim(self, channel: SharedChannel) -> None:
        if self.ready:
            with contextlib.suppress(*self._transport.errors):
                await self._transport.publish(channel.claim_topic, channel.claim.encode(), None)

    async def close(self) -> None:
        await self._transport.close()
        if self._grace_timer is not None:
            self._grace_timer.cancel()

    # -- transport events, on the asyncio loop --------------------------------------------

    async def transport_up(self, reconnected: bool) -> None:
        subscriptions = [
            subscription
            for channel in list(self._by_out_topic.values())
            for subscription in channel.subscriptions
        ]
        batch = self._transport.max_topics_per_packet
        for start in range(0, len(subscriptions), batch):
            await self._transport.subscribe(subscriptions[start : start + batch])
        if subscriptions:
            log.info("broker.resubscribed", channels=len(subscriptions) // 2)
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if reconnected:
            self._metrics.link_reconnects.inc()
        self.connected.set()
        self._metrics.link_ready.set(1)
        log.info("broker.reachable", url=_without_credentials(self._settings.mqtt_url))

    def transport_down(self) -> None:
        if self.ready:
            log.warning("broker.lost", channels=len(self._by_out_topic))
        self.connected.clear()
        self._metrics.link_ready.set(0)
        if self._grace_timer is None and self._by_out_topic:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self._settings.broker_grace, self._grace_expired)

    def transport_message(self, topic: str, payload: bytes) -> None:
        channel = self._by_out_topic.get(topic)
        if channel is not None:
            channel.enqueue(payload)
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
    ) -> None:
        settings = link.settings
        self._link = link
        self._settings = settings
        self._deliver = deliver
        self._on_lost = on_lost
        self.cp_id = cp_id
        self.claim = claim
        self.in_topic = settings.topic_in.format(cp_id=cp_id)
        self.out_topic = settings.topic_out.format(cp_id=cp_id)
        self.claim_topic = settings.topic_claim.format(cp_id=cp_id)
        self.subscriptions = [Subscription(self.out_topic), Subscription(self.claim_topic, True)]
        self._subprotocol = subprotocol
        self._pending: deque[bytes] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()

    async def publish(self, frame: bytes) -> None:
        transport = self._link.transport
        await publish_within_grace(
            lambda: transport.publish(self.in_topic, frame, self._subprotocol),
            self._link.connected,
            self._ended,
            self._settings.broker_grace,
            transport.errors,
        )

    def enqueue(self, payload: bytes) -> None:
        """Queue an outbound message; one sender task drains the queue in order."""
        if self._ended.is_set():
            return
        if len(self._pending) >= self._settings.out_queue_limit:
            self._link.metrics.frames_dropped.labels(direction="out", reason="cp_too_slow").inc()
            log.warning("frame.dropped", cp_id=self.cp_id, direction="out", reason="cp too slow")
            return
        self._pending.append(payload)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                await self._deliver(self._pending.popleft())
        finally:
            self._sender = None

    def consider(self, claim: Claim | None) -> None:
        """React to a claim on this CP's claim topic (possibly our own)."""
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

    async def close(self) -> None:
        self._ended.set()
        sender = self._sender
        if sender is not None and sender is not asyncio.current_task():
            # Let queued answers reach the CP if it is still there, but never wait long.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(sender), 1.0)
            sender.cancel()
        await self._link.release(self)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else url
