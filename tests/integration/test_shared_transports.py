"""The shared link's broker connections, each library against a real Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from gateway.links.shared_aiomqtt import AiomqttTransport
from gateway.links.shared_crt import CrtTransport

from gateway.links.shared import (
    AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE,
    SharedTransport,
    Subscription,
    TransportFactory,
)
from gateway.settings import Settings
from tests.support.mosquitto import MosquittoContainer, MosquittoProcess
from tests.support.mqtt import mqtt_peer

pytestmark = pytest.mark.integration

TRANSPORTS: dict[str, TransportFactory] = {"aiomqtt": AiomqttTransport, "awscrt": CrtTransport}


class Recorder:
    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.received: list[tuple[str, bytes]] = []

    async def transport_up(self, reconnected: bool) -> None:
        self.up.set()

    def transport_down(self) -> None:
        self.up.clear()

    def transport_message(self, topic: str, payload: bytes) -> None:
        self.received.append((topic, payload))


@pytest.mark.parametrize("impl", TRANSPORTS)
async def test_no_local_topics_do_not_bring_back_the_gateways_own_messages(
    impl: str, broker: MosquittoProcess | MosquittoContainer
) -> None:
    events = Recorder()
    transport = TRANSPORTS[impl](Settings(mqtt_url=broker.url), f"no-local-{impl}", events)
    transport.start()
    try:
        await asyncio.wait_for(events.up.wait(), 10)
        claims, out = f"{impl}/claims/CP1", f"{impl}/CP1/out"
        await transport.subscribe([Subscription(out), Subscription(claims, no_local=True)])
        await transport.publish(claims, b"own claim", None)
        await transport.publish(out, b"own out", None)
        async with mqtt_peer(broker.url) as other_gateway:
            await other_gateway.publish(claims, b"other claim")
        await until_received(events, lambda: len(events.received) >= 2)
        await asyncio.sleep(0.2)  # time for an unwanted echo to arrive
        assert set(events.received) == {(claims, b"other claim"), (out, b"own out")}
    finally:
        await transport.close()


async def until_received(events: Recorder, condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"received only {events.received}")


@pytest.mark.parametrize("impl", TRANSPORTS)
def test_aws_iot_core_gets_at_most_8_topics_per_subscribe(impl: str) -> None:
    settings = Settings(mqtt_url="mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883")
    transport: SharedTransport = TRANSPORTS[impl](settings, "limits", Recorder())
    assert transport.max_topics_per_packet == AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE == 8
    local: SharedTransport = TRANSPORTS[impl](
        Settings(mqtt_url="mqtt://127.0.0.1:1"), "l", Recorder()
    )
    assert local.max_topics_per_packet > 8
