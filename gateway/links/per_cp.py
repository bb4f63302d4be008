"""One MQTT client per charge point, client id = cpId (the AWS-compatible link).

With the CP's own client id, IoT policies and lifecycle events work per charge point, and the
broker itself enforces one connection per CP across gateway replicas: when another replica
connects the same client id, the broker drops this channel's connection. The channel then gives
the CP up without ever reconnecting (reconnecting would take the CP back and start a tug of war).

Brokers that speak MQTT 5 fully say why with DISCONNECT "session taken over" (0x8E); Mosquitto 2.0
just closes the socket. So a drop without that reason code is classified by the gateway's probe
connection: if the probe stayed connected, the broker is fine and only this CP's connection was
dropped, which means another client took its identity; if the probe was lost too, the broker
went away and the channel reconnects within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

import aiomqtt
import paho.mqtt.client as paho
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import backoff_delays
from gateway.links.base import BrokerUnavailable, Channel, Deliver, LinkLost, OnLost
from gateway.links.broker_url import BrokerAddress, parse_broker_url
from gateway.links.grace import publish_within_grace
from gateway.links.mqtt_common import make_client, subprotocol_property, was_taken_over
from gateway.links.probe import BrokerProbe
from gateway.links.tls import tls_context_for
from gateway.observability import Metrics
from gateway.settings import Settings
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

TAKEOVER_CHECK_DELAY = 0.25
BROKER_LOSS_WINDOW = 2.0


class PerCpLink:
    def __init__(self, settings: Settings, metrics: Metrics, gateway_id: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._address = parse_broker_url(settings.mqtt_url)
        # One TLS context for the probe and every CP's client.
        self._tls_context = tls_context_for(settings)
        self._probe = BrokerProbe(
            self._address,
            identifier=f"ocpp-gateway-probe-{gateway_id}",
            timeout=settings.mqtt_timeout,
            keepalive=settings.mqtt_keepalive,
            metrics=metrics,
            tls_context=self._tls_context,
        )

    @property
    def ready(self) -> bool:
        return self._probe.ready

    async def start(self) -> None:
        await self._probe.start(wait=self._settings.mqtt_timeout)

    async def open_channel(
        self, cp_id: str, subprotocol: str, deliver: Deliver, on_lost: OnLost
    ) -> Channel:
        channel = PerCpChannel(
            self._address,
            self._settings,
            self._metrics,
            self._probe,
            cp_id,
            subprotocol,
            deliver,
            on_lost,
            tls_context=self._tls_context,
        )
        await channel.open()
        return channel

    async def close(self) -> None:
        await self._probe.close()


class PerCpChannel:
    def __init__(
        self,
        address: BrokerAddress,
        settings: Settings,
        metrics: Metrics,
        probe: BrokerProbe,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._address = address
        self._tls_context = tls_context
        self._settings = settings
        self._metrics = metrics
        self._probe = probe
        self._cp_id = cp_id
        self._deliver = deliver
        self._on_lost = on_lost
        self._in_topic = settings.topic_in.format(cp_id=cp_id)
        self._out_topic = settings.topic_out.format(cp_id=cp_id)
        self._publish_properties = subprotocol_property(subprotocol)
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._log = log.bind(cp_id=cp_id)

    async def open(self) -> None:
        self._client = await self._connect(resume=False)
        self._reader = asyncio.create_task(self._read_loop(), name=f"mqtt-reader-{self._cp_id}")

    async def _connect(self, resume: bool) -> aiomqtt.Client:
        """Connect and subscribe; the subscription is acknowledged before this returns."""
        connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Keep the broker session through a short outage, so /out messages are not lost.
        connect_properties.SessionExpiryInterval = int(self._settings.broker_grace)
        client = make_client(
            self._address,
            self._cp_id,
            self._settings.mqtt_timeout,
            self._settings.mqtt_keepalive,
            tls_context=self._tls_context,
            clean_start=not resume,
            properties=connect_properties,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"cannot connect to the broker: {exc}") from exc
        try:
            await client.subscribe(self._out_topic, qos=self._settings.qos)
        except aiomqtt.MqttError as exc:
            await _disconnect(client)
            raise BrokerUnavailable(f"cannot subscribe to {self._out_topic}: {exc}") from exc
        self._connected.set()
        return client

    async def publish(self, frame: bytes) -> None:
        await publish_within_grace(
            lambda: self._publish_now(frame),
            self._connected,
            self._ended,
            self._settings.broker_grace,
            (aiomqtt.MqttError,),
        )

    async def _publish_now(self, frame: bytes) -> None:
        client = self._client
        assert client is not None
        await client.publish(
            self._in_topic, frame, qos=self._settings.qos, properties=self._publish_properties
        )

    async def _read_loop(self) -> None:
        client = self._client
        while client is not None:
            try:
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes | bytearray):
                        await self._deliver(bytes(payload))
            except aiomqtt.MqttError as exc:
                self._connected.clear()
                if self._ended.is_set():
                    return
                if await self._was_taken_over(exc):
                    await _disconnect(client)
                    self._end(LinkLost.TAKEN_OVER)
                    return
                self._log.warning("broker.channel_lost", error=str(exc))
                await _disconnect(client)
                client = await self._reconnect()

    async def _was_taken_over(self, error: aiomqtt.MqttError) -> bool:
        if was_taken_over(error):
            return True
        # Give the probe time to notice a broker-wide loss (it sees a closed socket in ms).
        await asyncio.sleep(TAKEOVER_CHECK_DELAY)
        return not self._probe.lost_within(BROKER_LOSS_WINDOW)

    async def _reconnect(self) -> aiomqtt.Client | None:
        deadline = time.monotonic() + self._settings.broker_grace
        delays = backoff_delays(initial=0.1, maximum=2.0)
        while not self._ended.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(next(delays), max(0.0, deadline - time.monotonic())))
            try:
                client = await self._connect(resume=True)
            except BrokerUnavailable:
                continue
            if self._ended.is_set():
                await _disconnect(client)
                return None
            self._client = client
            self._metrics.link_reconnects.inc()
            self._log.info("broker.channel_restored")
            return client
        if not self._ended.is_set():
            self._end(LinkLost.BROKER_UNAVAILABLE)
        return None

    def _end(self, reason: LinkLost) -> None:
        self._ended.set()
        self._metrics.link_lost.labels(reason=reason.value).inc()
        self._on_lost(reason)

    async def close(self) -> None:
        self._ended.set()
        reader = self._reader
        if reader is not asyncio.current_task():
            await cancel_and_wait(reader)
        if self._client is not None and self._connected.is_set():
            self._connected.clear()
            await _disconnect(self._client)


async def _disconnect(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError, paho.WebsocketConnectionError, OSError):
        await client.__aexit__(None, None, None)
