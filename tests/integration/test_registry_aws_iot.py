"""The aws-iot registry against a real AWS emulator process (`moto_server`) that can go away.

The outage is real: the emulator process is stopped, so boto3 meets a refused connection.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.registry.aws_iot import AwsIotRegistry
from gateway.registry.base import RegistryUnavailable
from gateway.server import Gateway
from tests.support.aws import MotoServer, isolate_from_real_aws
from tests.support.clock import FakeClock
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer
from tests.support.ports import free_port
from tests.support.waiting import until

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


@pytest.fixture
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


def create_thing(server: MotoServer, name: str) -> None:
    client = boto3.client("iot", region_name=REGION, endpoint_url=server.url)
    client.create_thing(thingName=name)
    client.close()


@pytest.fixture
async def registry(moto_server: MotoServer) -> AsyncIterator[tuple[AwsIotRegistry, FakeClock]]:
    clock = FakeClock()
    registry = AwsIotRegistry(region=REGION, endpoint_url=moto_server.url, clock=clock)
    await registry.start()
    yield registry, clock
    await registry.close()


async def test_looks_things_up_through_the_endpoint_url(
    moto_server: MotoServer, registry: tuple[AwsIotRegistry, FakeClock]
) -> None:
    create_thing(moto_server, "CP1")
    aws_registry, _ = registry
    assert await aws_registry.is_registered("CP1")
    assert not await aws_registry.is_registered("CP2")


async def test_during_an_outage_known_ids_are_registered_and_unknown_ones_unavailable(
    moto_server: MotoServer, registry: tuple[AwsIotRegistry, FakeClock]
) -> None:
    create_thing(moto_server, "CP1")
    aws_registry, clock = registry
    assert await aws_registry.is_registered("CP1")
    moto_server.stop()
    clock.advance(3600)  # CP1's entry has expired: the registry must ask again, and fails
    assert await aws_registry.is_registered("CP1")
    assert aws_registry.cache.stats.stale_answers == 1
    with pytest.raises(RegistryUnavailable, match="Could not connect to the endpoint URL"):
        await aws_registry.is_registered("CP2")


async def test_nothing_listening_at_the_endpoint_is_unavailable() -> None:
    registry = AwsIotRegistry(region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}")
    await registry.start()
    try:
        with pytest.raises(RegistryUnavailable, match="DescribeThing failed"):
            await registry.is_registered("CP1")
    finally:
        await registry.close()


# -- what a charge point sees --------------------------------------------------------------


async def refusal(url: str) -> tuple[int | None, str | None]:
    async with connect(url, subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        return ws.close_code, ws.close_reason


async def assert_bridged(url: str, cp_id: str, csms: MqttPeer) -> None:
    async with connect(url, subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send('[2,"1","Heartbeat",{}]')
        assert (await csms.next()).topic == f"{cp_id}/in"


@pytest.fixture
async def aws_gateway(broker: MosquittoProcess, moto_server: MotoServer) -> AsyncIterator[Gateway]:
    async with running_gateway(
        broker.url, registry="aws-iot", aws_region=REGION, aws_endpoint_url=moto_server.url
    ) as gateway:
        yield gateway


async def test_gateway_admits_things_and_refuses_others_with_1008(
    moto_server: MotoServer, aws_gateway: Gateway, csms: MqttPeer
) -> None:
    create_thing(moto_server, "CP1")
    await assert_bridged(ws_url(aws_gateway, "CP1"), "CP1", csms)
    assert await refusal(ws_url(aws_gateway, "CP2")) == (
        1008,
        "Charge Point CP2 not registered as an IoT Thing",
    )


async def test_gateway_during_a_registry_outage(
    moto_server: MotoServer, aws_gateway: Gateway, csms: MqttPeer
) -> None:
    create_thing(moto_server, "CP1")
    await assert_bridged(ws_url(aws_gateway, "CP1"), "CP1", csms)
    moto_server.stop()
    await assert_bridged(ws_url(aws_gateway, "CP1"), "CP1", csms)
    code, reason = await refusal(ws_url(aws_gateway, "CP3"))
    assert code == 1013  # try again later
    assert reason is not None and "retry later" in reason


async def test_a_thing_deleted_while_its_cp_is_connected_is_closed_by_revalidation(
    broker: MosquittoProcess, moto_server: MotoServer, csms: MqttPeer
) -> None:
    create_thing(moto_server, "CP1")
    async with running_gateway(
        broker.url,
        registry="aws-iot",
        aws_region=REGION,
        aws_endpoint_url=moto_server.url,
        registry_positive_ttl=0.2,
        registry_revalidate_interval=0.2,
        registry_events_topic="",  # no deletion event: re-validation alone must find out
        registry_mirror=False,  # the per-id lookups' cache; the mirror's re-read is tested apart
    ) as gateway:
        async with connect(ws_url(gateway, "CP1"), subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            await ws.send('[2,"1","Heartbeat",{}]')
            assert (await csms.next()).topic == "CP1/in"
            client = boto3.client("iot", region_name=REGION, endpoint_url=moto_server.url)
            client.delete_thing(thingName="CP1")
            client.close()
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
        assert (ws.close_code, ws.close_reason) == (
            1008,
            "Charge Point CP1 not registered as an IoT Thing",
        )


async def test_a_hung_registry_serves_known_ids_at_once_and_bounds_unknown_ones(
    broker: MosquittoProcess, moto_server: MotoServer, csms: MqttPeer
) -> None:
    create_thing(moto_server, "CP1")
    async with running_gateway(
        broker.url,
        registry="aws-iot",
        aws_region=REGION,
        aws_endpoint_url=moto_server.url,
        registry_positive_ttl=0.2,
        registry_timeout=1.0,
        registry_events_topic="",
        registry_revalidate_interval=0,
        registry_mirror=False,  # the per-id lookups' cache; the mirror is tested apart
    ) as gateway:
        registry = gateway.registry
        assert isinstance(registry, AwsIotRegistry)
        await assert_bridged(ws_url(gateway, "CP1"), "CP1", csms)
        moto_server.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        try:
            await until(lambda: registry.cache.cached_answer("CP1") is None, what="expiry")
            await assert_bridged(ws_url(gateway, "CP1"), "CP1", csms)
            # Admitted while the refresh still waits for the hung registry: not after it.
            assert registry.cache.looking_up("CP1")
            assert (registry.stats.stale_answers, registry.stats.errors) == (1, 0)
            code, reason = await refusal(ws_url(gateway, "CP9"))
            assert code == 1013
            assert reason is not None and "retry later" in reason
            assert registry.stats.timeouts == 1
        finally:
            moto_server.process.send_signal(signal.SIGCONT)
