"""Thing-deleted events through a real Mosquitto close connected charge points with 1008.

Mosquitto accepts publishing to `$aws/...` topics and delivers them to `$aws/events/thing/+/...`
subscriptions, so the test publishes exactly what AWS IoT publishes, on AWS IoT's topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.links.broker import BrokerSettings, connection_factory
from gateway.links.crt_connection import CrtConnection
from gateway.registry.events import RegistryEventWatcher, build_event_watcher
from gateway.registry.mirrored import MirroredRegistry
from gateway.server import Gateway
from gateway.settings import LinkImpl, Settings
from tests.support.aws import MotoServer, isolate_from_real_aws
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import mqtt_peer
from tests.support.tls import BROKER_HOST, STATIC_AWS_CREDENTIALS, TlsBroker, make_pki
from tests.support.waiting import until

pytestmark = pytest.mark.integration

REGION = "us-east-1"
NOT_REGISTERED = "Charge Point {} not registered as an IoT Thing"


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


def iot(server: MotoServer) -> Any:
    return boto3.client("iot", region_name=REGION, endpoint_url=server.url)


def thing_event(name: str, operation: str = "DELETED") -> bytes:
    return json.dumps(
        {
            "eventType": "THING_EVENT",
            "eventId": "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853",
            "timestamp": 1234567890123,
            "operation": operation,
            "accountId": "123456789012",
            "thingId": "b604f69c-aa9a-4d4a-829e-c480e958a0b5",
            "thingName": name,
            "versionNumber": 1,
            "thingTypeName": None,
            "attributes": {},
        }
    ).encode()


async def publish(broker_url: str, topic: str, payload: bytes) -> None:
    async with mqtt_peer(broker_url) as peer:
        await peer.publish(topic, payload)


async def publish_deleted(broker_url: str, name: str) -> None:
    await publish(broker_url, f"$aws/events/thing/{name}/deleted", thing_event(name))


@contextlib.asynccontextmanager
async def aws_gateway(broker_url: str, moto_server: MotoServer) -> AsyncIterator[Gateway]:
    """Events on (the default with aws-iot), re-validation off: only an event can close a CP."""
    async with running_gateway(
        broker_url,
        registry="aws-iot",
        aws_region=REGION,
        aws_endpoint_url=moto_server.url,
        registry_revalidate_interval=0,
    ) as gateway:
        yield gateway


def watcher_of(gateway: Gateway) -> RegistryEventWatcher:
    assert gateway.registry_events is not None
    return gateway.registry_events


async def connect_cp(gateway: Gateway, cp_id: str) -> ClientConnection:
    ws = await connect(ws_url(gateway, cp_id), subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
    await until(lambda: gateway.sessions.get(cp_id) is not None, what=f"{cp_id}'s session")
    return ws


async def close_of(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code, ws.close_reason


async def test_a_deleted_thing_is_closed_with_1008_and_refused_when_it_comes_back(
    broker: MosquittoProcess, moto_server: MotoServer
) -> None:
    iot(moto_server).create_thing(thingName="CP-EV1")
    async with aws_gateway(broker.url, moto_server) as gateway:
        registry = gateway.registry
        assert isinstance(registry, MirroredRegistry)
        await asyncio.wait_for(registry.wait_loaded(), 10)
        assert watcher_of(gateway).subscribed
        ws = await connect_cp(gateway, "CP-EV1")
        iot(moto_server).delete_thing(thingName="CP-EV1")
        await publish_deleted(broker.url, "CP-EV1")
        assert await close_of(ws) == (1008, NOT_REGISTERED.format("CP-EV1"))

        async with connect(ws_url(gateway, "CP-EV1"), subprotocols=["ocpp2.0.1"]) as again:  # type: ignore[list-item]
            assert await close_of(again) == (1008, NOT_REGISTERED.format("CP-EV1"))
        assert "CP-EV1" not in registry.mirror
        # Admitted from the mirror, refused from the event: no DescribeThing at all.
        assert registry.stats.lookups == 0


async def test_other_events_and_bad_payloads_close_nothing(
    broker: MosquittoProcess, moto_server: MotoServer
) -> None:
    for name in ("CP-EV2", "CP-EV3"):
        iot(moto_server).create_thing(thingName=name)
    async with aws_gateway(broker.url, moto_server) as gateway:
        kept = await connect_cp(gateway, "CP-EV2")
        closed = await connect_cp(gateway, "CP-EV3")
        topic = "$aws/events/thing/CP-EV2/deleted"
        with capture_logs() as logs:
            await publish(broker.url, topic, b"CP-EV2 is gone")
            await publish(broker.url, topic, b'{"thingName": "CP-EV2"}')
            await publish(
                broker.url, "$aws/events/thing/CP-EV2/updated", thing_event("CP-EV2", "UPDATED")
            )
            await publish(broker.url, topic, thing_event("CP#2"))
            # Events arrive in order: once CP-EV3 is closed, the ones above were handled.
            await publish_deleted(broker.url, "CP-EV3")
            assert await close_of(closed) == (1008, NOT_REGISTERED.format("CP-EV3"))
        await kept.ping()  # still open
        await kept.close()
    rejected = [entry["reason"] for entry in logs if entry["event"] == "registry.event_rejected"]
    assert rejected == ["not JSON", "no `eventType` string"]
    deleted = [entry["cp_id"] for entry in logs if entry["event"] == "registry.thing_deleted"]
    assert deleted == ["CP-EV3"]


async def test_the_watcher_subscribes_again_after_the_broker_comes_back(
    private_broker: MosquittoProcess, moto_server: MotoServer
) -> None:
    iot(moto_server).create_thing(thingName="CP-EV4")
    async with aws_gateway(private_broker.url, moto_server) as gateway:
        watcher = watcher_of(gateway)
        await asyncio.to_thread(private_broker.stop)
        await until(lambda: not watcher.subscribed, what="the watcher to notice the outage")
        await asyncio.to_thread(private_broker.start)
        await until(lambda: watcher.subscribed and gateway.ready, timeout=30, what="resubscribed")
        ws = await connect_cp(gateway, "CP-EV4")
        await publish_deleted(private_broker.url, "CP-EV4")
        assert await close_of(ws) == (1008, NOT_REGISTERED.format("CP-EV4"))


# -- the watcher on its own ----------------------------------------------------------------


class Deleted:
    def __init__(self) -> None:
        self.names: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, cp_id: str) -> None:
        await self.names.put(cp_id)


async def test_the_watcher_connects_with_mutual_tls_like_the_link() -> None:
    pki = make_pki()
    broker = TlsBroker(pki).start()
    try:
        settings = Settings(
            _env_file=None,
            registry="aws-iot",
            mqtt_url=f"mqtts://{BROKER_HOST}:{broker.mtls_port}",
            mqtt_ca_file=pki.ca,
            mqtt_cert_file=pki.client.cert,
            mqtt_key_file=pki.client.key,
        )
        watcher = build_event_watcher(settings, "gw-tls")
        assert watcher is not None
        deleted = Deleted()
        await watcher.start(deleted)
        try:
            assert watcher.subscribed
            await publish_deleted(broker.plain_url, "CP1")
            assert await deleted.names.get() == "CP1"
        finally:
            await watcher.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("impl", ["aiomqtt", "awscrt"])
async def test_an_unreachable_broker_does_not_hold_up_the_start(
    impl: str, unused_tcp_port: int
) -> None:
    broker = BrokerSettings(
        gateway_id="gw-nowhere",
        mqtt_url=f"mqtt://127.0.0.1:{unused_tcp_port}",
        link_impl=LinkImpl(impl),
        mqtt_timeout=1.0,
    )
    watcher = RegistryEventWatcher(
        connection_factory(broker),
        topic="$aws/events/thing/+/deleted",
        client_id=broker.client_id("events"),
        timeout=1.0,
    )
    started = time.monotonic()
    with capture_logs() as logs:
        await watcher.start(Deleted())
    assert time.monotonic() - started < 2 * 1.0 + 0.5  # at most the start's own bound
    await watcher.close()
    assert not watcher.subscribed
    problem = next(entry for entry in logs if entry["event"] == "registry.events_unavailable")
    assert "re-validation" in problem["hint"]


async def test_the_watcher_signs_with_sigv4_through_the_crt_like_the_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in STATIC_AWS_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    pki = make_pki()
    broker = TlsBroker(pki).start()  # its WebSocket listener takes the presigned URL as is
    try:
        settings = Settings(
            _env_file=None,
            registry="aws-iot",
            link_impl="awscrt",
            mqtt_auth="sigv4",
            mqtt_url=f"mqtts://{BROKER_HOST}:{broker.websockets_port}",
            mqtt_ca_file=pki.ca,
        )
        watcher = build_event_watcher(settings, "gw-sigv4")
        assert watcher is not None
        assert isinstance(watcher._connection, CrtConnection)
        deleted = Deleted()
        await watcher.start(deleted)
        try:
            assert watcher.subscribed
            await publish_deleted(broker.plain_url, "CP-SIGV4")
            assert await asyncio.wait_for(deleted.names.get(), 10) == "CP-SIGV4"
            await publish(broker.plain_url, "$aws/events/thing/CP-SIGV4/deleted", b"garbage")
            await publish_deleted(broker.plain_url, "CP-SIGV4-2")
            assert await asyncio.wait_for(deleted.names.get(), 10) == "CP-SIGV4-2"
        finally:
            await watcher.close()
    finally:
        broker.stop()
