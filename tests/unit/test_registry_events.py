"""Thing-deleted events: reading AWS IoT's payload, the topic setting, building the watcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from structlog.testing import capture_logs

from gateway.links.aiomqtt_connection import AiomqttConnection
from gateway.links.broker import BrokerSettings
from gateway.links.broker_url import parse_broker_url
from gateway.links.connection import (
    BrokerRefused,
    ConnectionEvents,
    ConnectionOptions,
    Down,
    DownReason,
    LinkError,
    Subscription,
    UserProperties,
)
from gateway.links.crt_connection import CrtConnection
from gateway.registry import events as registry_events
from gateway.registry.events import (
    MAX_EVENT_BYTES,
    InvalidRegistryEvent,
    RegistryEventWatcher,
    build_event_watcher,
    deleted_thing_name,
)
from gateway.settings import THING_DELETED_TOPIC, Settings


def aws_event(**changes: Any) -> bytes:
    """A Thing event as AWS IoT publishes it (the example of the developer guide)."""
    event: dict[str, Any] = {
        "eventType": "THING_EVENT",
        "eventId": "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853",
        "timestamp": 1234567890123,
        "operation": "DELETED",
        "accountId": "123456789012",
        "thingId": "b604f69c-aa9a-4d4a-829e-c480e958a0b5",
        "thingName": "CP1",
        "versionNumber": 1,
        "thingTypeName": None,
        "attributes": {"attribute1": "value1"},
    }
    event.update(changes)
    return json.dumps(event).encode()


def test_a_thing_deleted_event_names_the_thing() -> None:
    assert deleted_thing_name(aws_event()) == "CP1"


@pytest.mark.parametrize(
    "payload",
    [
        aws_event(operation="CREATED"),
        aws_event(operation="UPDATED"),
        aws_event(eventType="THING_TYPE_EVENT", operation="DELETED"),
        aws_event(eventType="THING_GROUP_EVENT"),
    ],
)
def test_other_registry_events_are_ignored(payload: bytes) -> None:
    assert deleted_thing_name(payload) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"CP1", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 5000 + b"]" * 5000, "not JSON"),
        (b'{"eventType": NaN}', "not JSON"),
        (b'["THING_EVENT"]', "not a JSON object"),
        (b'{"operation": "DELETED", "thingName": "CP1"}', "no `eventType` string"),
        (aws_event(eventType=7), "no `eventType` string"),
        (aws_event(operation=None), "without an `operation` string"),
        (aws_event(thingName=None), "without a `thingName` string"),
        (aws_event(thingName=""), "without a `thingName` string"),
        (aws_event(thingName=["CP1"]), "without a `thingName` string"),
        (b" " * (MAX_EVENT_BYTES + 1), f"larger than {MAX_EVENT_BYTES} bytes"),
    ],
)
def test_anything_else_is_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidRegistryEvent, match=reason):
        deleted_thing_name(payload)


class SubackClient:
    """Stands for aiomqtt's client: answers a SUBSCRIBE with the given SUBACK codes."""

    def __init__(self, codes: Sequence[object]) -> None:
        self.codes = codes

    async def subscribe(self, topics: object, timeout: float | None = None) -> Sequence[object]:
        return self.codes


async def subscribe_answered_with(codes: Sequence[object]) -> None:
    broker = BrokerSettings(gateway_id="gw")
    connection = AiomqttConnection(
        parse_broker_url(broker.mqtt_url), broker, ConnectionOptions("c"), NoEvents(), None
    )
    connection._client = SubackClient(codes)  # type: ignore[assignment]
    await connection.subscribe([Subscription("granted/t"), Subscription(THING_DELETED_TOPIC)])


async def test_suback_refusals_are_found_in_mqtt_5_and_3_codes() -> None:
    """A refusal in the SUBACK is `BrokerRefused`, whose last part the watcher logs."""
    granted = ReasonCode(PacketTypes.SUBACK, identifier=1)
    refused = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    await subscribe_answered_with([granted, granted])
    with pytest.raises(BrokerRefused, match=r"subscription to \$aws/.*: Not authorized$"):
        await subscribe_answered_with([granted, refused])
    await subscribe_answered_with((1, 1))
    with pytest.raises(BrokerRefused, match=r"subscription to \$aws/.*: 0x80$"):
        await subscribe_answered_with((1, 0x80))


# -- the setting ---------------------------------------------------------------------------


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("registry", "topic"),
    [
        ("aws-iot", THING_DELETED_TOPIC),
        ("dynamodb", THING_DELETED_TOPIC),
        ("file", ""),
        ("static", ""),
        ("allow-all", ""),
    ],
)
def test_the_event_topic_is_on_by_default_for_aws_registries_only(
    registry: str, topic: str
) -> None:
    assert settings(registry=registry).registry_events_topic == topic
    assert THING_DELETED_TOPIC == "$aws/events/thing/+/deleted"


def test_an_empty_event_topic_turns_the_watcher_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY", "aws-iot")
    monkeypatch.setenv("GATEWAY_REGISTRY_EVENTS_TOPIC", "")
    assert settings().registry_events_topic == ""
    assert build_event_watcher(settings(), "gw1") is None


def test_the_event_topic_can_be_set_for_any_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY_EVENTS_TOPIC", " fleet/registry/+/deleted ")
    assert settings(registry="file").registry_events_topic == "fleet/registry/+/deleted"


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("$aws/events/#/deleted", "`#` must be a whole level, and the last one"),
        ("$aws/events/thing#", "`#` must be a whole level"),
        ("$aws/events/thing/CP+/deleted", "`+` must be a whole level"),
    ],
)
def test_an_invalid_event_topic_is_refused_with_the_rule(topic: str, problem: str) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_REGISTRY_EVENTS_TOPIC") as caught:
        settings(registry_events_topic=topic)
    assert problem in str(caught.value)


# -- building the watcher ------------------------------------------------------------------


async def test_the_watcher_has_a_client_id_of_its_own_on_the_gateway_broker() -> None:
    watcher = build_event_watcher(
        settings(registry="aws-iot", mqtt_url="mqtt://broker.local:1884"), "gw-7"
    )
    assert watcher is not None
    assert watcher.client_id.startswith("ocpp-gateway:events:gw-7:")
    assert watcher.topic == THING_DELETED_TOPIC
    assert not watcher.subscribed
    connection = watcher._connection
    assert isinstance(connection, CrtConnection)  # the default GATEWAY_LINK_IMPL, installed here
    assert connection.client_id == watcher.client_id


def test_no_watcher_without_a_topic() -> None:
    assert build_event_watcher(settings(registry="static"), "gw1") is None


async def test_with_sigv4_the_watcher_connects_through_the_crt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    sigv4 = settings(
        registry="aws-iot",
        link_impl="awscrt",
        mqtt_auth="sigv4",
        mqtt_url="mqtts://example-ats.iot.eu-west-1.amazonaws.com:443",
    )
    watcher = build_event_watcher(sigv4, "gw1")
    assert watcher is not None
    assert isinstance(watcher._connection, CrtConnection)
    assert watcher.client_id.startswith("ocpp-gateway:events:gw1:")


# -- the watcher over a connection -----------------------------------------------------------


class NoEvents:
    def connection_up(self) -> None:
        pass

    def connection_down(self, down: Down) -> None:
        pass

    def message(self, topic: str, payload: bytes) -> None:
        pass


class FakeConnection:
    """A `BrokerConnection` that comes up at once and answers SUBSCRIBEs as it is told."""

    max_topics_per_packet = 8

    def __init__(self, options: ConnectionOptions, events: ConnectionEvents) -> None:
        self.client_id = options.client_id
        self.options = options
        self.events = events
        self.answers: list[LinkError | None] = []
        self.subscriptions: list[list[Subscription]] = []
        self.stopped = False
        self._up = False

    @property
    def up(self) -> bool:
        return self._up

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self.comes_up)

    def comes_up(self) -> None:
        self._up = True
        self.events.connection_up()

    def goes_down(self) -> None:
        self._up = False
        self.events.connection_down(Down(DownReason.DROPPED, "the broker went away"))

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: UserProperties = ()
    ) -> None:
        raise AssertionError("the watcher never publishes")

    async def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        self.subscriptions.append(list(subscriptions))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


class Deleted:
    def __init__(self) -> None:
        self.names: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, cp_id: str) -> None:
        await self.names.put(cp_id)


def fake_watcher() -> tuple[RegistryEventWatcher, FakeConnection]:
    made: list[FakeConnection] = []

    def connect(options: ConnectionOptions, events: ConnectionEvents) -> FakeConnection:
        made.append(FakeConnection(options, events))
        return made[-1]

    watcher = RegistryEventWatcher(
        connect, topic=THING_DELETED_TOPIC, client_id="events-test", timeout=1.0
    )
    (connection,) = made
    return watcher, connection


def unavailable(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "registry.events_unavailable"]


async def test_the_watcher_keeps_a_reconnecting_connection_and_hands_on_deletions() -> None:
    watcher, connection = fake_watcher()
    assert connection.options.client_id == "events-test"
    assert connection.options.reconnect
    assert connection.options.max_delay == registry_events.RETRY_MAXIMUM
    deleted = Deleted()
    await watcher.start(deleted)
    assert watcher.subscribed
    assert connection.subscriptions == [[Subscription(THING_DELETED_TOPIC)]]
    connection.events.message("$aws/events/thing/CP1/deleted", aws_event())
    connection.events.message("$aws/events/thing/CP2/deleted", b"garbage")
    connection.events.message("$aws/events/thing/CP#/deleted", aws_event(thingName="CP#"))
    connection.events.message("$aws/events/thing/CP3/deleted", aws_event(thingName="CP3"))
    assert await asyncio.wait_for(deleted.names.get(), 5) == "CP1"
    assert await asyncio.wait_for(deleted.names.get(), 5) == "CP3"
    await watcher.close()
    assert connection.stopped


async def test_a_refused_subscription_is_logged_with_what_to_allow_and_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_events, "RETRY_INITIAL", 0.01)
    watcher, connection = fake_watcher()
    refusal = BrokerRefused(f"the broker refused the subscription to {THING_DELETED_TOPIC}: X")
    connection.answers = [refusal, refusal]
    with capture_logs() as logs:
        await watcher.start(Deleted())  # returns after the first (refused) attempt
        await asyncio.wait_for(watcher.wait_subscribed(), 5)
    assert len(connection.subscriptions) == 3
    problems = unavailable(logs)
    assert len(problems) == 2
    assert problems[0]["error"].startswith(
        f"the broker refused the subscription to '{THING_DELETED_TOPIC}' (X): allow iot:Subscribe"
    )
    assert all(problem["retry_in"] is not None for problem in problems)
    assert "re-validation" in problems[0]["hint"]
    await watcher.close()


async def test_a_drop_unsubscribes_and_the_next_connection_subscribes_again() -> None:
    watcher, connection = fake_watcher()
    await watcher.start(Deleted())
    assert watcher.subscribed
    with capture_logs() as logs:
        connection.goes_down()
        assert not watcher.subscribed
        connection.comes_up()
        await asyncio.wait_for(watcher.wait_subscribed(), 5)
    assert len(connection.subscriptions) == 2
    [problem] = unavailable(logs)
    assert (problem["error"], problem["retry_in"]) == ("dropped: the broker went away", None)
    await watcher.close()


async def test_a_subscribe_lost_with_the_connection_waits_for_the_next_one() -> None:
    watcher, connection = fake_watcher()
    connection.answers = [LinkError("the broker did not acknowledge subscribe in time")]
    with capture_logs() as logs:
        await watcher.start(Deleted())
        await asyncio.sleep(0.1)
    assert not watcher.subscribed
    assert len(connection.subscriptions) == 1  # no retry on a dead connection: it comes back
    [problem] = unavailable(logs)
    assert problem["retry_in"] is None
    connection.comes_up()
    await asyncio.wait_for(watcher.wait_subscribed(), 5)
    await watcher.close()
