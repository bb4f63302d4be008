"""Thing-deleted events: reading AWS IoT's payload, the topic setting, building the watcher."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.links.crt_connection import CrtConnection
from gateway.registry.events import (
    MAX_EVENT_BYTES,
    InvalidRegistryEvent,
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
