"""AwsIotRegistry against moto's in-process AWS, and botocore's Stubber for service errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from gateway.registry.aws_iot import AwsIotRegistry, is_thing_name
from gateway.registry.base import RegistryMisconfigured, RegistryUnavailable
from tests.support.aws import isolate_from_real_aws
from tests.support.clock import FakeClock

if TYPE_CHECKING:
    from mypy_boto3_iot import IoTClient

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


@pytest.fixture
def aws() -> Iterator[IoTClient]:
    """moto's AWS for the test, and an IoT client to create Things with."""
    with mock_aws():
        yield boto3.client("iot", region_name=REGION)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(aws: IoTClient, clock: FakeClock) -> AsyncIterator[AwsIotRegistry]:
    registry = AwsIotRegistry(region=REGION, positive_ttl=300, negative_ttl=30, clock=clock)
    await registry.start()
    yield registry
    await registry.close()


def count_describe_calls(registry: AwsIotRegistry) -> list[str]:
    """Every DescribeThing the client sends, recorded by botocore's own event hooks."""
    calls: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params["thingName"])

    registry.client.meta.events.register("provide-client-params.iot.DescribeThing", record)
    return calls


async def test_a_thing_is_registered_and_an_unknown_id_is_not(
    aws: IoTClient, registry: AwsIotRegistry
) -> None:
    aws.create_thing(thingName="CP1")
    assert await registry.is_registered("CP1")
    assert not await registry.is_registered("CP2")


async def test_a_deleted_thing_is_refused_once_the_positive_ttl_expires(
    aws: IoTClient, registry: AwsIotRegistry, clock: FakeClock
) -> None:
    aws.create_thing(thingName="CP1")
    assert await registry.is_registered("CP1")
    aws.delete_thing(thingName="CP1")
    clock.advance(299)
    assert await registry.is_registered("CP1")  # still cached
    clock.advance(2)
    assert await registry.is_registered("CP1")  # expired: served while it is refreshed
    await registry.cache.lookup_done("CP1")
    assert not await registry.is_registered("CP1")


async def test_a_new_thing_is_accepted_once_the_negative_ttl_expires(
    aws: IoTClient, registry: AwsIotRegistry, clock: FakeClock
) -> None:
    assert not await registry.is_registered("CP2")
    aws.create_thing(thingName="CP2")
    assert not await registry.is_registered("CP2")
    clock.advance(31)
    assert await registry.is_registered("CP2")


async def test_concurrent_lookups_of_one_id_send_one_describe_thing(
    aws: IoTClient, registry: AwsIotRegistry
) -> None:
    aws.create_thing(thingName="CP1")
    calls = count_describe_calls(registry)
    answers = await asyncio.gather(*(registry.is_registered("CP1") for _ in range(100)))
    assert answers == [True] * 100
    assert calls == ["CP1"]


async def test_calls_to_aws_are_bounded_by_max_concurrency(
    aws: IoTClient, clock: FakeClock
) -> None:
    registry = AwsIotRegistry(region=REGION, max_concurrency=3, clock=clock)
    await registry.start()
    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()
    # Three callers must be inside at once to pass: proves the bound is reached, not just kept.
    all_three_in = threading.Barrier(3, timeout=10)

    def enter(**_: Any) -> None:
        nonlocal in_flight, most_in_flight
        with lock:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
        all_three_in.wait()

    def leave(**_: Any) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1

    registry.client.meta.events.register("before-call.iot.DescribeThing", enter)
    registry.client.meta.events.register("after-call.iot.DescribeThing", leave)
    try:
        ids = [f"CP{number}" for number in range(30)]
        assert await asyncio.gather(*(registry.is_registered(i) for i in ids)) == [False] * 30
    finally:
        await registry.close()
    assert most_in_flight == 3


@pytest.mark.parametrize("cp_id", ["CP.1", "CP*1", "CP=1", "CP|1", "cp@depot"])
async def test_ids_that_cannot_be_thing_names_are_refused_without_calling_aws(
    registry: AwsIotRegistry, cp_id: str
) -> None:
    calls = count_describe_calls(registry)
    assert not await registry.is_registered(cp_id)
    assert calls == []


def test_thing_name_rule() -> None:
    assert is_thing_name("CP_1-a:b")
    assert not is_thing_name("")
    assert not is_thing_name("x" * 129)


@pytest.fixture
def stubbed() -> Iterator[tuple[IoTClient, Stubber]]:
    client = boto3.client("iot", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber


async def test_throttling_answers_known_ids_from_the_stale_entry(
    stubbed: tuple[IoTClient, Stubber], clock: FakeClock
) -> None:
    client, stubber = stubbed
    registry = AwsIotRegistry(client=client, clock=clock)
    await registry.start()
    stubber.add_response("describe_thing", {"thingName": "CP1"}, {"thingName": "CP1"})
    assert await registry.is_registered("CP1")
    clock.advance(3600)
    stubber.add_client_error("describe_thing", "ThrottlingException", "Rate exceeded", 400)
    assert await registry.is_registered("CP1")
    assert registry.cache.stats.stale_answers == 1
    stubber.add_client_error("describe_thing", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(RegistryUnavailable, match=r"ThrottlingException.*Rate exceeded"):
        await registry.is_registered("CP2")
    stubber.assert_no_pending_responses()
    await registry.close()


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        ("AccessDeniedException", 403, "needs iot:DescribeThing"),
        ("ThrottlingException", 400, r"GATEWAY_REGISTRY_POSITIVE_TTL.*GATEWAY_REGISTRY=dynamodb"),
        ("ServiceUnavailableException", 503, "ServiceUnavailable"),
        ("InternalFailureException", 500, "InternalFailure"),
    ],
)
async def test_service_errors_for_unknown_ids_raise_registry_unavailable(
    stubbed: tuple[IoTClient, Stubber], code: str, status: int, hint: str
) -> None:
    client, stubber = stubbed
    registry = AwsIotRegistry(client=client)
    await registry.start()
    stubber.add_client_error("describe_thing", code, "no", status)
    with pytest.raises(RegistryUnavailable, match=hint):
        await registry.is_registered("CP1")
    await registry.close()


async def test_a_missing_region_is_a_clear_configuration_error() -> None:
    registry = AwsIotRegistry()
    with pytest.raises(RegistryMisconfigured, match="set AWS_REGION"):
        await registry.start()
    await registry.close()


async def test_an_invalid_endpoint_is_a_clear_configuration_error() -> None:
    registry = AwsIotRegistry(region=REGION, endpoint_url="not a url")
    with pytest.raises(RegistryMisconfigured, match="GATEWAY_AWS_ENDPOINT_URL"):
        await registry.start()
    await registry.close()


async def test_lookups_before_start_say_what_to_do() -> None:
    registry = AwsIotRegistry(region=REGION)
    with pytest.raises(RegistryUnavailable, match="call `await start\\(\\)` first"):
        await registry.is_registered("CP1")


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be >= 1"):
        AwsIotRegistry(max_concurrency=0)


async def test_the_client_retries_in_adaptive_mode_with_the_configured_attempts(
    aws: IoTClient, clock: FakeClock
) -> None:
    registry = AwsIotRegistry(region=REGION, max_attempts=5, max_concurrency=4, clock=clock)
    await registry.start()
    try:
        config = registry.client.meta.config
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 5}
        assert config.max_pool_connections == 5  # one more for the mirror's listing
    finally:
        await registry.close()


async def test_invalidate_refuses_a_deleted_thing_without_asking_aws(
    aws: IoTClient, registry: AwsIotRegistry, clock: FakeClock
) -> None:
    aws.create_thing(thingName="CP1")
    assert await registry.is_registered("CP1")
    calls = count_describe_calls(registry)
    aws.delete_thing(thingName="CP1")
    registry.invalidate("CP1")
    assert not await registry.is_registered("CP1")
    assert calls == []
    aws.create_thing(thingName="CP1")
    clock.advance(30)
    assert await registry.is_registered("CP1")
    assert calls == ["CP1"]


async def test_stats_count_hits_misses_and_lookups(
    aws: IoTClient, registry: AwsIotRegistry
) -> None:
    aws.create_thing(thingName="CP1")
    for _ in range(3):
        await registry.is_registered("CP1")
    stats = registry.stats
    assert (stats.hits, stats.misses, stats.lookups, stats.errors) == (2, 1, 1, 0)


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        AwsIotRegistry(max_attempts=0)
