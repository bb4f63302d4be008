"""The registry mirror against a real `moto_server` process: the load, outages, changes.

Each test runs for both AWS backends: Things listed by ListThings (250 a page) and a table
read by Scan (1 MB a page; a few large items make a second page).
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from websockets.asyncio.client import connect

from gateway.registry.aws_calls import CachedAwsRegistry
from gateway.registry.aws_iot import LIST_PAGE_SIZE, AwsIotRegistry
from gateway.registry.base import RegistryUnavailable
from gateway.registry.dynamodb import KEY_ATTRIBUTE, DynamoDbRegistry
from gateway.registry.mirrored import MirroredRegistry
from gateway.server import Gateway
from tests.support.aws import MotoServer, isolate_from_real_aws
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer
from tests.support.throttling import ThrottlingProxy
from tests.support.waiting import until

pytestmark = pytest.mark.integration

REGION = "us-east-1"
TABLE = "charge-points"
LARGE_ITEMS = 12  # 100 kB each: more than DynamoDB's 1 MB page


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


@pytest.fixture
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@dataclass
class Backend:
    name: str
    server: MotoServer

    def create(self, count: int) -> list[str]:
        """More than one page of registered ids."""
        ids = [f"CP-{n:04d}" for n in range(count)]
        if self.name == "aws-iot":
            for cp_id in ids:
                self.add(cp_id)
            return ids
        client = self._dynamodb()
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for n, cp_id in enumerate(ids):
            item = {KEY_ATTRIBUTE: {"S": cp_id}}
            if n < LARGE_ITEMS:
                item["notes"] = {"S": "x" * 100_000}
            client.put_item(TableName=TABLE, Item=item)
        return ids

    def add(self, cp_id: str) -> None:
        if self.name == "aws-iot":
            boto3.client("iot", region_name=REGION, endpoint_url=self.server.url).create_thing(
                thingName=cp_id
            )
        else:
            self._dynamodb().put_item(TableName=TABLE, Item={KEY_ATTRIBUTE: {"S": cp_id}})

    def delete(self, cp_id: str) -> None:
        if self.name == "aws-iot":
            boto3.client("iot", region_name=REGION, endpoint_url=self.server.url).delete_thing(
                thingName=cp_id
            )
        else:
            self._dynamodb().delete_item(TableName=TABLE, Key={KEY_ATTRIBUTE: {"S": cp_id}})

    def source(self, endpoint_url: str | None = None) -> CachedAwsRegistry:  # type: ignore[type-arg]
        url = endpoint_url or self.server.url
        if self.name == "aws-iot":
            return AwsIotRegistry(region=REGION, endpoint_url=url, lookup_timeout=1.0)
        return DynamoDbRegistry(
            table=TABLE, region=REGION, endpoint_url=url, lookup_timeout=1.0, batch_lookups=True
        )

    def _dynamodb(self):  # type: ignore[no-untyped-def]
        return boto3.client("dynamodb", region_name=REGION, endpoint_url=self.server.url)


@pytest.fixture(params=["aws-iot", "dynamodb"])
def backend(request: pytest.FixtureRequest, moto_server: MotoServer) -> Backend:
    return Backend(request.param, moto_server)


@pytest.fixture
def ids(backend: Backend) -> list[str]:
    return backend.create(LIST_PAGE_SIZE + 10 if backend.name == "aws-iot" else 40)


async def loaded(backend: Backend, resync_interval: float = 0) -> MirroredRegistry:
    registry = MirroredRegistry(backend.source(), resync_interval=resync_interval)
    await registry.start()
    await asyncio.wait_for(registry.wait_loaded(), 20)
    return registry


@pytest.fixture
async def mirrored(backend: Backend, ids: list[str]) -> AsyncIterator[MirroredRegistry]:
    registry = await loaded(backend)
    yield registry
    await registry.close()


async def test_the_load_reads_every_page(mirrored: MirroredRegistry, ids: list[str]) -> None:
    assert mirrored.loaded
    assert len(mirrored.mirror) == len(ids)
    assert all(cp_id in mirrored.mirror for cp_id in ids)
    assert mirrored.mirror_stats.pages >= 2
    assert await mirrored.is_registered(ids[-1])
    assert mirrored.stats.lookups == 0  # answered from the mirror


async def test_known_ids_are_served_while_aws_hangs_and_unknown_ones_are_unavailable(
    mirrored: MirroredRegistry, moto_server: MotoServer, ids: list[str]
) -> None:
    moto_server.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(mirrored.is_registered(cp_id) for cp_id in ids)), 1.0
        )
        assert all(answers)
        with pytest.raises(RegistryUnavailable):
            await mirrored.is_registered("CP-NEW")
    finally:
        moto_server.process.send_signal(signal.SIGCONT)


async def test_known_ids_are_served_when_aws_is_gone(
    mirrored: MirroredRegistry, moto_server: MotoServer, ids: list[str]
) -> None:
    moto_server.stop()
    assert await mirrored.is_registered(ids[0])
    with pytest.raises(RegistryUnavailable):
        await mirrored.is_registered("CP-NEW")


async def test_an_id_added_after_the_load_is_found_by_its_own_lookup(
    mirrored: MirroredRegistry, backend: Backend
) -> None:
    backend.add("CP-NEW")
    assert await mirrored.is_registered("CP-NEW")
    assert "CP-NEW" in mirrored.mirror
    assert mirrored.stats.lookups == 1
    assert not await mirrored.is_registered("CP-NEVER")


async def test_an_invalidated_id_is_refused_afterwards(
    mirrored: MirroredRegistry, backend: Backend, ids: list[str]
) -> None:
    backend.delete(ids[0])
    mirrored.invalidate(ids[0])  # what a Thing-deleted event does
    assert not await mirrored.is_registered(ids[0])
    assert ids[0] not in mirrored.mirror


async def test_a_resync_removes_an_id_deleted_without_an_event(
    backend: Backend, ids: list[str]
) -> None:
    registry = await loaded(backend, resync_interval=0.2)
    try:
        backend.delete(ids[0])
        await until(lambda: ids[0] not in registry.mirror, what="the re-read")
        assert not await registry.is_registered(ids[0])
        assert await registry.is_registered(ids[1])
        assert registry.mirror_stats.syncs >= 2
    finally:
        await registry.close()


def health(gateway: Gateway) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{gateway.port}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_not_ready_until_loaded_while_registered_cps_still_connect(
    broker: MosquittoProcess, moto_server: MotoServer, csms: MqttPeer
) -> None:
    backend = Backend("aws-iot", moto_server)
    backend.add("CP1")
    proxy = ThrottlingProxy(moto_server.url)
    proxy.throttle(10**6, only_path="/things")  # ListThings only: DescribeThing still answers
    try:
        async with running_gateway(
            broker.url,
            registry="aws-iot",
            aws_region=REGION,
            aws_endpoint_url=proxy.url,
            registry_events_topic="",
            registry_max_attempts=1,
            registry_timeout=5.0,
        ) as gateway:
            status, body = await asyncio.to_thread(health, gateway)
            assert (status, body["registry"], body["broker"]) == (503, "loading", "reachable")
            async with connect(ws_url(gateway, "CP1"), subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
                await ws.send('[2,"1","Heartbeat",{}]')
                assert (await csms.next()).topic == "CP1/in"
            registry = gateway.registry
            assert isinstance(registry, MirroredRegistry)
            assert not registry.loaded and registry.mirror_stats.page_errors >= 1
            proxy.throttle(0)
            await asyncio.wait_for(registry.wait_loaded(), 20)
            status, body = await asyncio.to_thread(health, gateway)
            assert (status, body["registry"]) == (200, "loaded")
    finally:
        proxy.stop()


async def test_dynamodb_looks_up_ids_the_mirror_lacks_in_batches_of_100(
    moto_server: MotoServer,
) -> None:
    backend = Backend("dynamodb", moto_server)
    backend.create(1)
    registry = await loaded(backend)
    try:
        new = [f"CP-NEW{n:03d}" for n in range(150)]
        for cp_id in new[::2]:
            backend.add(cp_id)
        answers = await asyncio.gather(*(registry.is_registered(cp_id) for cp_id in new))
        assert answers == [n % 2 == 0 for n in range(150)]
        source = registry.source
        assert isinstance(source, DynamoDbRegistry)
        assert source.batches == 2  # 100 keys, then 50
        assert all(cp_id in registry.mirror for cp_id in new[::2])
    finally:
        await registry.close()
