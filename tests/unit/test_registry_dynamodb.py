"""DynamoDbRegistry against moto's in-process AWS, and botocore's Stubber for service errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from structlog.testing import capture_logs

from gateway.registry import build_registry
from gateway.registry.base import RegistryMisconfigured, RegistryUnavailable
from gateway.registry.dynamodb import KEY_ATTRIBUTE, PROBE_KEY, DynamoDbRegistry
from gateway.registry.mirrored import MirroredRegistry
from gateway.settings import Settings
from tests.support.aws import isolate_from_real_aws
from tests.support.clock import FakeClock

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"
TABLE = "charge-points"


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)


def create_table(client: DynamoDBClient, name: str = TABLE, key: str = KEY_ATTRIBUTE) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def put_charge_point(client: DynamoDBClient, cp_id: str) -> None:
    client.put_item(
        TableName=TABLE, Item={KEY_ATTRIBUTE: {"S": cp_id}, "thingArn": {"S": f"arn:{cp_id}"}}
    )


@pytest.fixture
def aws() -> Iterator[DynamoDBClient]:
    """moto's AWS with the table, and a client to add and remove charge points with."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client)
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(aws: DynamoDBClient, clock: FakeClock) -> AsyncIterator[DynamoDbRegistry]:
    registry = DynamoDbRegistry(table=TABLE, region=REGION, clock=clock)
    await registry.start()
    yield registry
    await registry.close()


def record_get_item(registry: DynamoDbRegistry) -> list[dict[str, Any]]:
    """The parameters of every GetItem the client sends, from botocore's own event hooks."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    registry.client.meta.events.register("provide-client-params.dynamodb.GetItem", record)
    return calls


async def test_an_item_is_registered_and_an_absent_id_is_not(
    aws: DynamoDBClient, registry: DynamoDbRegistry
) -> None:
    put_charge_point(aws, "CP1")
    assert await registry.is_registered("CP1")
    assert not await registry.is_registered("CP2")


async def test_get_item_reads_only_the_key_eventually_consistent_by_default(
    aws: DynamoDBClient, registry: DynamoDbRegistry
) -> None:
    calls = record_get_item(registry)
    await registry.is_registered("CP1")
    (call,) = calls
    assert call["Key"] == {KEY_ATTRIBUTE: {"S": "CP1"}}
    assert call["ProjectionExpression"] == "#id"
    assert call["ExpressionAttributeNames"] == {"#id": KEY_ATTRIBUTE}
    assert call["ConsistentRead"] is False


async def test_consistent_read_is_asked_for_when_configured(aws: DynamoDBClient) -> None:
    registry = DynamoDbRegistry(table=TABLE, region=REGION, consistent_read=True)
    await registry.start()
    try:
        calls = record_get_item(registry)
        put_charge_point(aws, "CP1")
        assert await registry.is_registered("CP1")
        assert calls[0]["ConsistentRead"] is True
    finally:
        await registry.close()


async def test_ids_with_any_valid_characters_are_looked_up(
    aws: DynamoDBClient, registry: DynamoDbRegistry
) -> None:
    put_charge_point(aws, "cp@depot.1")
    assert await registry.is_registered("cp@depot.1")


async def test_a_removed_item_is_refused_once_the_positive_ttl_expires(
    aws: DynamoDBClient, registry: DynamoDbRegistry, clock: FakeClock
) -> None:
    put_charge_point(aws, "CP1")
    assert await registry.is_registered("CP1")
    aws.delete_item(TableName=TABLE, Key={KEY_ATTRIBUTE: {"S": "CP1"}})
    assert await registry.is_registered("CP1")  # cached
    clock.advance(301)
    assert await registry.is_registered("CP1")  # expired: served while it is refreshed
    await registry.cache.lookup_done("CP1")
    assert not await registry.is_registered("CP1")


async def test_invalidate_refuses_at_once_even_while_the_table_still_has_the_item(
    aws: DynamoDBClient, registry: DynamoDbRegistry, clock: FakeClock
) -> None:
    put_charge_point(aws, "CP1")
    assert await registry.is_registered("CP1")
    registry.invalidate("CP1")  # the Thing is gone; the table is updated later
    assert not await registry.is_registered("CP1")
    clock.advance(31)
    assert await registry.is_registered("CP1")  # the table is the authority again


async def test_concurrent_lookups_of_one_id_send_one_get_item(
    aws: DynamoDBClient, registry: DynamoDbRegistry
) -> None:
    put_charge_point(aws, "CP1")
    calls = record_get_item(registry)
    answers = await asyncio.gather(*(registry.is_registered("CP1") for _ in range(50)))
    assert answers == [True] * 50
    assert len(calls) == 1
    assert registry.stats.shared == 49


async def test_the_client_retries_in_adaptive_mode(aws: DynamoDBClient) -> None:
    registry = DynamoDbRegistry(table=TABLE, region=REGION, max_attempts=4)
    await registry.start()
    try:
        assert registry.client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    finally:
        await registry.close()


# -- configuration problems stop the gateway at start with what to fix ---------------------


async def test_a_missing_table_name_says_which_setting_to_set() -> None:
    registry = DynamoDbRegistry(table=" ", region=REGION)
    with pytest.raises(RegistryMisconfigured, match="set GATEWAY_REGISTRY_TABLE"):
        await registry.start()
    await registry.close()


async def test_a_table_that_does_not_exist_is_refused_at_start(aws: DynamoDBClient) -> None:
    registry = DynamoDbRegistry(table="no-such-table", region=REGION)
    with pytest.raises(
        RegistryMisconfigured,
        match=r"'no-such-table' in us-east-1 does not exist: create it \(partition key "
        r"chargePointId, type S\)",
    ):
        await registry.start()
    await registry.close()


async def test_a_table_with_another_key_is_refused_at_start(aws: DynamoDBClient) -> None:
    create_table(aws, name="things", key="thingName")
    registry = DynamoDbRegistry(table="things", region=REGION)
    with pytest.raises(RegistryMisconfigured, match="partition key must be chargePointId"):
        await registry.start()
    await registry.close()


async def test_a_missing_region_is_a_clear_configuration_error() -> None:
    registry = DynamoDbRegistry(table=TABLE)
    with pytest.raises(RegistryMisconfigured, match="set AWS_REGION"):
        await registry.start()
    await registry.close()


async def test_an_invalid_endpoint_is_a_clear_configuration_error() -> None:
    registry = DynamoDbRegistry(table=TABLE, region=REGION, endpoint_url="not a url")
    with pytest.raises(RegistryMisconfigured, match="GATEWAY_AWS_ENDPOINT_URL"):
        await registry.start()
    await registry.close()


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        DynamoDbRegistry(table=TABLE, max_attempts=0)
    with pytest.raises(ValueError, match="max_concurrency must be >= 1"):
        DynamoDbRegistry(table=TABLE, max_concurrency=0)


# -- service errors --------------------------------------------------------------------------


@pytest.fixture
async def stubbed(clock: FakeClock) -> AsyncIterator[tuple[DynamoDbRegistry, Stubber]]:
    client = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_response("get_item", {})  # the check at start
        registry = DynamoDbRegistry(table=TABLE, client=client, clock=clock)
        await registry.start()
        yield registry, stubber
        await registry.close()


def registered_item(cp_id: str) -> dict[str, Any]:
    return {"Item": {KEY_ATTRIBUTE: {"S": cp_id}}}


async def test_throttling_answers_known_ids_from_the_stale_entry(
    stubbed: tuple[DynamoDbRegistry, Stubber], clock: FakeClock
) -> None:
    registry, stubber = stubbed
    stubber.add_response("get_item", registered_item("CP1"))
    assert await registry.is_registered("CP1")
    clock.advance(3600)
    stubber.add_client_error("get_item", "ProvisionedThroughputExceededException", "slow", 400)
    assert await registry.is_registered("CP1")
    assert registry.stats.stale_answers == 1
    stubber.add_client_error("get_item", "ProvisionedThroughputExceededException", "slow", 400)
    with pytest.raises(RegistryUnavailable, match="is throttling reads: raise its read capacity"):
        await registry.is_registered("CP2")
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        ("AccessDeniedException", 400, "needs dynamodb:GetItem on table 'charge-points'"),
        ("InternalServerError", 500, "InternalServerError"),
        ("ResourceNotFoundException", 400, "does not exist: create it"),
    ],
)
async def test_service_errors_for_unknown_ids_raise_registry_unavailable(
    stubbed: tuple[DynamoDbRegistry, Stubber], code: str, status: int, hint: str
) -> None:
    registry, stubber = stubbed
    stubber.add_client_error("get_item", code, "no", status)
    with pytest.raises(RegistryUnavailable, match=hint):
        await registry.is_registered("CP1")


async def test_an_unreachable_table_at_start_is_logged_and_the_gateway_starts() -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("get_item", "InternalServerError", "busy", 500)
        registry = DynamoDbRegistry(table=TABLE, client=client)
        with capture_logs() as logs:
            await registry.start()
        await registry.close()
        stubber.assert_no_pending_responses()
    unreachable = next(e for e in logs if e["event"] == "registry.dynamodb_unreachable")
    assert "InternalServerError" in unreachable["error"]
    assert logs[-1]["event"] == "registry.dynamodb_ready"


async def test_the_start_check_reads_a_key_no_charge_point_can_have() -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_item",
            {},
            {
                "TableName": TABLE,
                "Key": {KEY_ATTRIBUTE: {"S": PROBE_KEY}},
                "ProjectionExpression": "#id",
                "ExpressionAttributeNames": {"#id": KEY_ATTRIBUTE},
                "ConsistentRead": False,
            },
        )
        registry = DynamoDbRegistry(table=TABLE, client=client)
        await registry.start()
        await registry.close()
    assert "#" in PROBE_KEY


# -- choosing the backend ------------------------------------------------------------------


def test_build_dynamodb_registry_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY", "dynamodb")
    monkeypatch.setenv("GATEWAY_REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("GATEWAY_REGISTRY_CONSISTENT_READ", "true")
    monkeypatch.setenv("GATEWAY_REGISTRY_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("GATEWAY_REGISTRY_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("GATEWAY_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    mirrored = build_registry(Settings(_env_file=None))
    assert isinstance(mirrored, MirroredRegistry)
    registry = mirrored.source
    assert isinstance(registry, DynamoDbRegistry)
    assert registry.batch_lookups
    assert (registry.table, registry.consistent_read, registry.max_attempts) == (TABLE, True, 5)
    assert (registry.max_concurrency, registry.region, registry.endpoint_url) == (
        8,
        "eu-west-1",
        "http://127.0.0.1:5000",
    )
