"""Throttling from a real HTTP endpoint: boto3's adaptive retry, throttle counts, stale answers.

A proxy in front of `moto_server` answers chosen requests the way AWS does when it throttles,
for both AWS registries (IoT DescribeThing and DynamoDB GetItem).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.registry.aws_iot import AwsIotRegistry
from gateway.registry.base import RegistryUnavailable
from gateway.registry.dynamodb import KEY_ATTRIBUTE, DynamoDbRegistry
from gateway.server import Gateway
from tests.support.aws import MotoServer, isolate_from_real_aws
from tests.support.clock import FakeClock
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import mqtt_peer
from tests.support.throttling import ThrottlingProxy

from .test_registry_aws_iot import assert_bridged

pytestmark = pytest.mark.integration

REGION = "us-east-1"
TABLE = "charge-points"

AwsRegistry = AwsIotRegistry | DynamoDbRegistry


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@dataclass
class Backend:
    name: str
    throttling_code: str

    def register(self, server: MotoServer, cp_id: str) -> None:
        if self.name == "aws-iot":
            iot = boto3.client("iot", region_name=REGION, endpoint_url=server.url)
            iot.create_thing(thingName=cp_id)
            return
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=server.url)
        if TABLE not in dynamodb.list_tables()["TableNames"]:
            dynamodb.create_table(
                TableName=TABLE,
                KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        dynamodb.put_item(TableName=TABLE, Item={KEY_ATTRIBUTE: {"S": cp_id}})

    def registry(self, endpoint_url: str, clock: FakeClock, max_attempts: int) -> AwsRegistry:
        if self.name == "aws-iot":
            return AwsIotRegistry(
                region=REGION, endpoint_url=endpoint_url, clock=clock, max_attempts=max_attempts
            )
        return DynamoDbRegistry(
            table=TABLE,
            region=REGION,
            endpoint_url=endpoint_url,
            clock=clock,
            max_attempts=max_attempts,
        )


BACKENDS = [
    Backend("aws-iot", "ThrottlingException"),
    Backend("dynamodb", "ProvisionedThroughputExceededException"),
]


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest, moto_server: MotoServer) -> Backend:
    chosen: Backend = request.param
    chosen.register(moto_server, "CP-T1")  # makes the DynamoDB table exist before any start
    return chosen


@pytest.fixture
def proxy(backend: Backend, moto_server: MotoServer) -> Iterator[ThrottlingProxy]:
    throttling = ThrottlingProxy(moto_server.url, backend.throttling_code)
    yield throttling
    throttling.stop()


@pytest.fixture
async def registry(
    backend: Backend, proxy: ThrottlingProxy
) -> AsyncIterator[tuple[AwsRegistry, FakeClock]]:
    clock = FakeClock()
    # Two attempts: every retry waits for botocore's back-off and, once throttled, for its
    # client-side rate limiter, which is slow at a test's tiny request rate.
    registry = backend.registry(proxy.url, clock, max_attempts=2)
    await registry.start()
    yield registry, clock
    await registry.close()


async def test_throttled_calls_are_retried_and_every_throttle_is_counted(
    proxy: ThrottlingProxy, registry: tuple[AwsRegistry, FakeClock]
) -> None:
    aws_registry, _ = registry
    proxy.throttle(1)
    assert await aws_registry.is_registered("CP-T1")
    assert proxy.throttled == 1
    stats = aws_registry.stats
    assert (stats.throttles, stats.lookups, stats.errors) == (1, 1, 0)


async def test_throttling_past_the_last_attempt_answers_known_ids_only(
    backend: Backend, proxy: ThrottlingProxy, registry: tuple[AwsRegistry, FakeClock]
) -> None:
    aws_registry, clock = registry
    assert await aws_registry.is_registered("CP-T1")
    clock.advance(3600)  # expired: the registry must ask again
    proxy.throttle(4)  # two lookups, two attempts each
    assert await aws_registry.is_registered("CP-T1")  # stale "yes" for a known id
    await aws_registry.cache.lookup_done("CP-T1")  # its refresh, in the background
    with pytest.raises(RegistryUnavailable, match=backend.throttling_code):
        await aws_registry.is_registered("CP-T2")
    stats = aws_registry.stats
    assert (stats.throttles, stats.errors, stats.stale_answers) == (4, 2, 1)


# -- what an operator sees -----------------------------------------------------------------


def scrape(gateway: Gateway) -> dict[str, float]:
    url = f"http://127.0.0.1:{gateway.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name.removeprefix("ocpp_gateway_registry_cache_"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("ocpp_gateway_registry_cache_")
    }


async def test_metrics_show_registry_throttles_and_lookups(
    broker: MosquittoProcess, backend: Backend, proxy: ThrottlingProxy
) -> None:
    async with (
        running_gateway(
            broker.url,
            registry=backend.name,
            registry_table=TABLE,
            aws_region=REGION,
            aws_endpoint_url=proxy.url,
            registry_events_topic="",
            registry_mirror=False,  # every connect asks AWS: the figures are the lookups'
        ) as gateway,
        mqtt_peer(broker.url, "+/in") as csms,
    ):
        proxy.throttle(1)
        await assert_bridged(ws_url(gateway, "CP-T1"), "CP-T1", csms)
        await assert_bridged(ws_url(gateway, "CP-T1"), "CP-T1", csms)
        figures = await asyncio.to_thread(scrape, gateway)
    assert figures["throttles_total"] == 1.0
    assert figures["lookups_total"] == 1.0  # DynamoDB's start check is not a lookup
    assert figures["misses_total"] == 1.0
    assert figures["hits_total"] == 1.0
    assert figures["errors_total"] == 0.0
