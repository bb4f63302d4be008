"""One MQTT connection per gateway, one subscription per connected charge point.

Far fewer broker connections than the per-CP link: the gateway subscribes to `<cpId>/out` when a
CP connects and unsubscribes when it leaves (never a wildcard over every CP's topic), and a
dictionary hands each message to the right session.

One connection per CP across replicas is kept with claims: when a CP connects, its gateway
publishes `{"gateway", "connection", "at"}` on the CP's claim topic, to which every gateway
holding that CP is subscribed. The newest claim wins (ordered by time, then gateway id, then
connection id, so every replica takes the same decision); a holder that sees a newer claim closes
its connection with 1000, and a holder that sees an older one re-publishes its own so the other
side learns it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import backoff_delays
from gateway.links.base import BrokerUnavailable, Channel, Deliver, LinkLost, OnLost
from gateway.links.broker_url import parse_broker_url
from gateway.links.grace import publish_within_grace
from gateway.links.mqtt_common import make_client, subprotocol_property
from gateway.observability import Metrics
from gateway.settings import Settings

log = structlog.get_logger(__name__)

SUBSCRIBE_BATCH = 500
# Ask the broker to keep many QoS 1 messages in flight: one connection carries every CP.
MAX_INFLIGHT = 65535


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
        fields = json.loads(payload)
        return Claim(float(fields["at"]), str(fields["gateway"]), str(fields["connection"]))
    except (ValueError, TypeError, KeyError):
        return None


class SharedLink:
    def __init__(self, settings: Settings, metrics: Metrics, gateway_id: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._gateway_id = gateway_id
        self._address = parse_broker_url(settings.mqtt_url)
        self._by_out_topic: dict[str, SharedChannel] = {}
        self._by_claim_topic: dict[str, SharedChannel] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._never_ended = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._grace_timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> bool:
        return self._connected.is_set()

    @property
    def client(self) -> aiomqtt.Client | None:
        return self._client if self._connected.is_set() else None

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="shared-link")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._settings.mqtt_timeout)
        if not self.ready:
            log.warning("broker.unreachable", host=self._address.host, port=self._address.port)

    async def open_channel(
        self, cp_id: str, subprotocol: str, deliver: Deliver, on_lost: OnLost
    ) -> Channel:
        client = self.client
        if client is None:
            raise BrokerUnavailable("the gateway is not connected to the broker")
        settings = self._settings
        channel = SharedChannel(
            self,
            cp_id,
            subprotocol,
            deliver,
            on_lost,
            claim=Claim(time.time(), self._gateway_id, uuid.uuid4().hex),
        )
        self._by_out_topic[channel.out_topic] = channel
        self._by_claim_topic[channel.claim_topic] = channel
        try:
            await client.subscribe(
                [(channel.out_topic, settings.qos), (channel.claim_topic, settings.qos)]
            )
            await client.publish(channel.claim_topic, channel.claim.encode(), qos=settings.qos)
        except aiomqtt.MqttError as exc:
            self._forget(channel)
            raise BrokerUnavailable(f"cannot subscribe for {cp_id}: {exc}") from exc
        return channel

    async def release(self, channel: SharedChannel) -> None:
        """Unsubscribe for a closed channel, unless a newer channel of the same CP took over."""
        if not self._forget(channel):
            return
        client = self.client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe([channel.out_topic, channel.claim_topic])

    def _forget(self, channel: SharedChannel) -> bool:
        if self._by_out_topic.get(channel.out_topic) is not channel:
            return False
        del self._by_out_topic[channel.out_topic]
        self._by_claim_topic.pop(channel.claim_topic, None)
        return True

    def reassert(self, channel: SharedChannel) -> None:
        """Publish the channel's claim again, in the background."""
        task = asyncio.create_task(self._publish_claim(channel))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_claim(self, channel: SharedChannel) -> None:
        client = self.client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(
                    channel.claim_topic, channel.claim.encode(), qos=self._settings.qos
                )

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._grace_timer is not None:
            self._grace_timer.cancel()

    # -- the connection ---------------------------------------------------------------

    async def _supervise(self) -> None:
        delays = backoff_delays(initial=0.1, maximum=5.0)
        first = True
        while True:
            client = self._new_client(clean_start=first)
            try:
                async with client:
                    await self._resubscribe(client)
                    self._set_connected(client, reconnected=not first)
                    first = False
                    delays = backoff_delays(initial=0.1, maximum=5.0)
                    await self._read(client)
            except aiomqtt.MqttError as exc:
                if self.ready:
                    log.warning("broker.lost", error=str(exc), channels=len(self._by_out_topic))
            finally:
                self._set_disconnected()
            await asyncio.sleep(next(delays))

    def _new_client(self, clean_start: bool) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Keep the broker session through a short outage so /out messages wait for us.
        properties.SessionExpiryInterval = int(self._settings.broker_grace)
        properties.ReceiveMaximum = MAX_INFLIGHT
        return make_client(
            self._address,
            f"ocpp-gateway-{self._gateway_id}",
            self._settings.mqtt_timeout,
            self._settings.mqtt_keepalive,
            clean_start=clean_start,
            properties=properties,
            max_inflight_messages=MAX_INFLIGHT,
        )

    async def _resubscribe(self, client: aiomqtt.Client) -> None:
        topics = [
            (topic, self._settings.qos)
            for channel in list(self._by_out_topic.values())
            for topic in (channel.out_topic, channel.claim_topic)
        ]
        for start in range(0, len(topics), SUBSCRIBE_BATCH):
            await client.subscribe(topics[start : start + SUBSCRIBE_BATCH])
        if topics:
            log.info("broker.resubscribed", channels=len(topics) // 2)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload
            if not isinstance(payload, bytes):
                continue
            channel = self._by_out_topic.get(topic)
            if channel is not None:
                channel.enqueue(payload)
                continue
            claimant = self._by_claim_topic.get(topic)
            if claimant is not None:
                claimant.consider(decode_claim(payload))

    def _set_connected(self, client: aiomqtt.Client, reconnected: bool) -> None:
        if reconnected:
            self._metrics.link_reconnects.inc()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self._client = client
        self._connected.set()
        self._metrics.link_ready.set(1)
        log.info("broker.reachable", host=self._address.host, port=self._address.port)

    def _set_disconnected(self) -> None:
        self._connected.clear()
        self._metrics.link_ready.set(0)
        if self._grace_timer is None and self._by_out_topic:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self._settings.broker_grace, self._grace_expired)

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
        settings = link._settings
        self._link = link
        self._settings = settings
        self._deliver = deliver
        self._on_lost = on_lost
        self.cp_id = cp_id
        self.claim = claim
        self.in_topic = settings.topic_in.format(cp_id=cp_id)
        self.out_topic = settings.topic_out.format(cp_id=cp_id)
        self.claim_topic = settings.topic_claim.format(cp_id=cp_id)
        self._properties = subprotocol_property(subprotocol)
        self._pending: deque[bytes] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()

    async def publish(self, frame: bytes) -> None:
        await publish_within_grace(
            lambda: self._link.client,
            self._link._connected,
            self._ended,
            self.in_topic,
            frame,
            self._settings.qos,
            self._properties,
            self._settings.broker_grace,
        )

    def enqueue(self, payload: bytes) -> None:
        """Queue an outbound message; one sender task drains the queue in order."""
        if self._ended.is_set():
            return
        if len(self._pending) >= self._settings.out_queue_limit:
            self._link._metrics.frames_dropped.labels(direction="out", reason="cp_too_slow").inc()
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
        self._link._metrics.link_lost.labels(reason=reason.value).inc()
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
