"""The shared link's connection through the AWS CRT (awsiotsdk's MQTT 5 client).

The CRT does the protocol work in C on its own thread, several times cheaper per message than
paho-mqtt, and reconnects by itself; with the shared link there is no takeover to guard
against (claims do that), so its own reconnection is exactly what is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from gateway.links.crt_clients import (
    CrtClient,
    CrtClientFactory,
    CrtLinkError,
    UserProperties,
    describe_crt_error,
    user_properties,
)
from gateway.links.nodelay import disable_nagle_towards
from gateway.links.shared import Subscription, TransportEvents, topics_per_subscribe
from gateway.settings import Settings

log = structlog.get_logger(__name__)


class CrtTransport:
    errors: tuple[type[Exception], ...] = (CrtLinkError,)

    def __init__(self, settings: Settings, client_id: str, events: TransportEvents) -> None:
        self._settings = settings
        self._events = events
        self._factory = CrtClientFactory(settings)
        self.max_topics_per_packet = topics_per_subscribe(self._factory.endpoint.host)
        self._client_id = client_id
        self._client: CrtClient | None = None
        self._up = False
        self._connected_before = False
        self._properties: dict[str, UserProperties] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reported_failure: str | None = None

    def start(self) -> None:
        self._client = self._factory.new_client(
            self._client_id,
            self,
            rejoin=False,
            stop_when_dropped=False,
            session_expiry=int(self._settings.broker_grace),
        )
        self._client.start()

    def _connected_client(self) -> CrtClient:
        if self._client is None or not self._up:
            raise CrtLinkError("the gateway is not connected to the broker")
        return self._client

    async def subscribe(self, subscriptions: list[Subscription]) -> None:
        await self._connected_client().subscribe(
            [each.topic for each in subscriptions],
            self._settings.qos,
            no_local={each.topic for each in subscriptions if each.no_local},
        )

    async def unsubscribe(self, topics: list[str]) -> None:
        await self._connected_client().unsubscribe(topics)

    async def publish(self, topic: str, payload: bytes, subprotocol: str | None) -> None:
        properties = self._properties.get(subprotocol or "")
        if properties is None:
            properties = user_properties({"subprotocol": subprotocol} if subprotocol else {})
            self._properties[subprotocol or ""] = properties
        await self._connected_client().publish(topic, payload, self._settings.qos, properties)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        client = self._client
        if client is not None:
            client.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.stopped.wait(), self._settings.mqtt_timeout)

    # -- client events, on the asyncio loop ----------------------------------------------

    def connected(self, client: CrtClient, rejoined: bool) -> None:
        disable_nagle_towards(self._factory.endpoint.port)
        self._up = True
        self._reported_failure = None
        reconnected = self._connected_before
        self._connected_before = True
        task = asyncio.create_task(self._restore(reconnected))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restore(self, reconnected: bool) -> None:
        try:
            await self._events.transport_up(reconnected)
        except CrtLinkError as exc:
            log.warning("broker.resubscribe_failed", error=str(exc))  # a drop follows

    def connect_failed(self, client: CrtClient, error: Exception) -> None:
        failure = describe_crt_error(error)
        if failure != self._reported_failure:
            self._reported_failure = failure
            log.warning("broker.connect_failed", error=failure)

    def disconnected(self, client: CrtClient, reason_code: int | None, error: Exception) -> None:
        self._up = False
        self._events.transport_down()

    def message(self, client: CrtClient, topic: str, payload: bytes) -> None:
        self._events.transport_message(topic, payload)
