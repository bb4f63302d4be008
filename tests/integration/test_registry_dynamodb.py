"""`GATEWAY_REGISTRY=dynamodb`: a gateway process against a `moto_server` process.

The table is created and changed through boto3 on the emulator's endpoint, as the sample's
Thing-event handler would; the charge points connect over real WebSockets.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.registry.dynamodb import KEY_ATTRIBUTE
from tests.support.aws import MotoServer, isolate_from_real_aws
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer

pytestmark = pytest.mark.integration

REGION = "us-east-1"
TABLE = "charge-points"


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


@pytest.fixture
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


class Table:
    def __init__(self, server: MotoServer) -> None:
        self.client = boto3.client("dynamodb", region_name=REGION, endpoint_url=server.url)

    def create(self) -> Table:
        self.client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return self

    def add(self, cp_id: str) -> None:
        self.client.put_item(TableName=TABLE, Item={KEY_ATTRIBUTE: {"S": cp_id}})

    def remove(self, cp_id: str) -> None:
        self.client.delete_item(TableName=TABLE, Key={KEY_ATTRIBUTE: {"S": cp_id}})


def dynamodb_gateway(broker: MosquittoProcess, server: MotoServer, **env: str) -> GatewayProcess:
    settings = {
        "GATEWAY_REGISTRY": "dynamodb",
        "GATEWAY_REGISTRY_TABLE": TABLE,
        "GATEWAY_AWS_ENDPOINT_URL": server.url,
        "AWS_REGION": REGION,
    }
    return GatewayProcess(broker.url, **{**settings, **env})


@pytest.fixture
def gateway(broker: MosquittoProcess, moto_server: MotoServer) -> Iterator[GatewayProcess]:
    Table(moto_server).create().add("CP1")
    process = dynamodb_gateway(
        broker,
        moto_server,
        GATEWAY_REGISTRY_POSITIVE_TTL="0.2",
        GATEWAY_REGISTRY_REVALIDATE_INTERVAL="0.2",
        GATEWAY_REGISTRY_RESYNC_INTERVAL="0.2",  # a removed item leaves the mirror at the re-read
    )
    process.start()
    yield process
    process.stop()


async def close_of(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code, ws.close_reason


async def test_ids_in_the_table_are_bridged_and_others_refused_with_1008(
    gateway: GatewayProcess, csms: MqttPeer
) -> None:
    async with connect(gateway.url("CP1"), subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send('[2,"1","Heartbeat",{}]')
        assert (await csms.next()).payload == b'[2,"1","Heartbeat",{}]'
    async with connect(gateway.url("CP2"), subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        assert await close_of(ws) == (1008, "Charge Point CP2 not registered as an IoT Thing")


async def test_an_item_removed_while_its_cp_is_connected_closes_it_with_1008(
    gateway: GatewayProcess, moto_server: MotoServer, csms: MqttPeer
) -> None:
    async with connect(gateway.url("CP1"), subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send('[2,"1","Heartbeat",{}]')
        await csms.next()
        Table(moto_server).remove("CP1")
        assert await close_of(ws) == (1008, "Charge Point CP1 not registered as an IoT Thing")


def registry_figures(gateway: GatewayProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(("ocpp_gateway_registry_cache_", "ocpp_gateway_registry_mirror_"))
    }


async def test_metrics_count_the_mirror_and_the_table_lookups(
    gateway: GatewayProcess, csms: MqttPeer
) -> None:
    for cp_id in ("CP1", "CP2"):  # CP2 is in no item: looked up by key
        async with connect(gateway.url(cp_id), subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            if cp_id == "CP1":
                await ws.send('[2,"1","Heartbeat",{}]')
                await csms.next()
            else:
                await close_of(ws)
    figures = await asyncio.to_thread(registry_figures, gateway)
    assert figures["ocpp_gateway_registry_cache_lookups_total"] >= 1
    assert figures["ocpp_gateway_registry_cache_errors_total"] == 0
    assert figures["ocpp_gateway_registry_mirror_syncs_total"] >= 1
    assert figures["ocpp_gateway_registry_mirror_ids"] == 1


def test_a_missing_table_stops_the_gateway_with_what_to_fix(
    broker: MosquittoProcess, moto_server: MotoServer
) -> None:
    process = dynamodb_gateway(broker, moto_server)
    with pytest.raises(RuntimeError, match="exited at start") as exited:
        process.start()
    assert process.process is not None and process.process.returncode == 2
    assert f"'{TABLE}' in {REGION} does not exist: create it" in str(exited.value)


def test_a_missing_table_name_stops_the_gateway_with_what_to_set(
    broker: MosquittoProcess, moto_server: MotoServer
) -> None:
    process = dynamodb_gateway(broker, moto_server, GATEWAY_REGISTRY_TABLE="")
    with pytest.raises(RuntimeError, match="set GATEWAY_REGISTRY_TABLE"):
        process.start()
    assert process.process is not None and process.process.returncode == 2
