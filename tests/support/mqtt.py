"""A test-side MQTT peer standing where the CSMS would: watches `/in`, publishes to `/out`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiomqtt

from gateway.links.broker_url import parse_broker_url


@dataclass
class Received:
    topic: str
    payload: bytes
    user_properties: dict[str, str]


class MqttPeer:
    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.received: asyncio.Queue[Received] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def subscribe(self, topic: str) -> None:
        await self.client.subscribe(topic, qos=1)

    async def _read(self) -> None:
        async for message in self.client.messages:
            props = getattr(message.properties, "UserProperty", None) or []
            payload = message.payload
            assert isinstance(payload, bytes)
            await self.received.put(Received(str(message.topic), payload, dict(props)))

    async def next(self, timeout: float = 5.0) -> Received:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def publish(self, topic: str, payload: str | bytes) -> None:
        await self.client.publish(topic, payload, qos=1)


@contextlib.asynccontextmanager
async def mqtt_peer(broker_url: str, *subscriptions: str) -> AsyncIterator[MqttPeer]:
    address = parse_broker_url(broker_url)
    client = aiomqtt.Client(
        address.host,
        address.port,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    async with client:
        peer = MqttPeer(client)
        for topic in subscriptions:
            await peer.subscribe(topic)
        peer._reader = asyncio.create_task(peer._read())
        try:
            yield peer
        finally:
            peer._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await peer._reader
