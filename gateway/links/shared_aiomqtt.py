"""The shared link's connection through aiomqtt (paho-mqtt)."""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import backoff_delays
from gateway.links.base import BrokerUnavailable
from gateway.links.broker_url import parse_broker_url
from gateway.links.mqtt_common import make_client, subprotocol_property
from gateway.links.shared import Subscription, TransportEvents, topics_per_subscribe
from gateway.links.tls import tls_context_for
from gateway.settings import Settings
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

# One connection carries every CP: let many QoS 1 messages be in flight both ways.
MAX_INFLIGHT = 65535


class AiomqttTransport:
    errors: tuple[type[Exception], ...] = (aiomqtt.MqttError,)

    def __init__(self, settings: Settings, client_id: str, events: TransportEvents) -> None:
        self._settings = settings
        self._client_id = client_id
        self._events = events
        self._address = parse_broker_url(settings.mqtt_url)
        self._tls_context = tls_context_for(settings)
        self.max_topics_per_packet = topics_per_subscribe(self._address.host)
        self._client: aiomqtt.Client | None = None
        self._properties: dict[str, Properties] = {}
        self._supervisor: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="shared-link-aiomqtt")

    async def _supervise(self) -> None:
        delays = backoff_delays(initial=0.1, maximum=5.0)
        connected_before = False
        while True:
            client = self._new_client(clean_start=not connected_before)
            try:
                async with client:
                    self._client = client
                    await self._events.transport_up(reconnected=connected_before)
                    connected_before = True
                    delays = backoff_delays(initial=0.1, maximum=5.0)
                    async for message in client.messages:
                        if isinstance(message.payload, bytes):
                            self._events.transport_message(message.topic.value, message.payload)
            except aiomqtt.MqttError as exc:
                log.debug("broker.connection_ended", error=str(exc))
            finally:
                self._client = None
                self._events.transport_down()
            await asyncio.sleep(next(delays))

    def _new_client(self, clean_start: bool) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Keep the broker session through a short outage so /out messages wait for us.
        properties.SessionExpiryInterval = int(self._settings.broker_grace)
        properties.ReceiveMaximum = MAX_INFLIGHT
        return make_client(
            self._address,
            self._client_id,
            self._settings.mqtt_timeout,
            self._settings.mqtt_keepalive,
            tls_context=self._tls_context,
            clean_start=clean_start,
            properties=properties,
            max_inflight_messages=MAX_INFLIGHT,
        )

    def _connected_client(self) -> aiomqtt.Client:
        if self._client is None:
            raise BrokerUnavailable("the gateway is not connected to the broker")
        return self._client

    async def subscribe(self, subscriptions: list[Subscription]) -> None:
        qos = self._settings.qos
        await self._connected_client().subscribe(
            [
                (each.topic, SubscribeOptions(qos=qos, noLocal=each.no_local))
                for each in subscriptions
            ]
        )

    async def unsubscribe(self, topics: list[str]) -> None:
        await self._connected_client().unsubscribe(topics)

    async def publish(self, topic: str, payload: bytes, subprotocol: str | None) -> None:
        properties = None
        if subprotocol is not None:
            properties = self._properties.get(subprotocol)
            if properties is None:
                properties = self._properties[subprotocol] = subprotocol_property(subprotocol)
        await self._connected_client().publish(
            topic, payload, qos=self._settings.qos, properties=properties
        )

    async def close(self) -> None:
        await cancel_and_wait(self._supervisor)
