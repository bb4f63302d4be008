"""State documents: merge patches, replica merges, documents read back from the broker."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from processor.settings import Settings
from processor.state import (
    RECENT_TRANSACTIONS,
    ConnectorStatus,
    JsonObject,
    StateChange,
    TransactionStarted,
    apply_change,
    change_patch,
    empty_document,
    merge,
    merge_patch,
    replacement_patch,
    sanitize,
    transaction_for,
)
from processor.topics import TopicTemplate

T1 = "2024-05-01T10:00:00.000Z"
T2 = "2024-05-01T10:00:05.000Z"
T3 = "2024-05-01T10:00:09.000Z"


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3], "new": {"x": 1}}
    assert merge_patch(target, patch) == {
        "a": "z",
        "c": {"d": "e"},
        "list": [3],
        "new": {"x": 1},
    }
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}  # untouched


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, {"a": 1}),
        ({"a": 1, "gone": 2}, {"a": 1}),
        ({"station": {"model": "M", "modem": {"iccid": "1"}}}, {"station": {"model": "N"}}),
        ({"a": {"b": 1}}, {"a": 5}),
        ({"a": 5}, {"a": {"b": 1}}),
    ],
)
def test_replacement_patch_turns_old_into_exactly_new(
    old: JsonObject | None, new: JsonObject
) -> None:
    assert merge_patch(old or {}, replacement_patch(old, new)) == new


def test_a_new_boot_replaces_the_reported_attributes() -> None:
    first = apply_change(
        empty_document("CP1"),
        StateChange(seen_at=T1, boot={"chargingStation": {"model": "M", "modem": {"imsi": "1"}}}),
    )
    second = apply_change(first, StateChange(seen_at=T2, boot={"chargingStation": {"model": "N"}}))
    assert second["reported"] == {"chargingStation": {"model": "N"}}
    assert second["bootedAt"] == T2


def test_connectors_accumulate_and_update() -> None:
    document = empty_document("CP1")
    for key, status, at in [
        ("1/1", "Available", T1),
        ("1/2", "Occupied", T2),
        ("1/1", "Faulted", T3),
    ]:
        document = apply_change(document, StateChange(connector=(key, ConnectorStatus(status, at))))
    assert document["connectors"] == {
        "1/1": {"status": "Faulted", "timestamp": T3},
        "1/2": {"status": "Occupied", "timestamp": T2},
    }


def test_only_the_recent_transactions_are_kept() -> None:
    document = empty_document("CP1")
    for n in range(1, 25):
        document = apply_change(document, StateChange(transaction=TransactionStarted(f"k{n}", n)))
    assert document["transactions"]["lastId"] == 24
    assert len(document["transactions"]["recent"]) == RECENT_TRANSACTIONS
    assert transaction_for(document, "k24") == 24
    assert transaction_for(document, "k1") is None


def test_the_change_patch_is_what_a_shadow_update_needs() -> None:
    change = StateChange(
        seen_at=T2,
        subprotocol="ocpp1.6",
        boot={"chargePointVendor": "A"},
        heartbeat_at=T2,
        connector=("1", ConnectorStatus("Charging", T1, "NoError")),
    )
    assert change_patch(change, empty_document("CP1")) == {
        "lastSeen": T2,
        "subprotocol": "ocpp1.6",
        "bootedAt": T2,
        "lastHeartbeat": T2,
        "connectors": {"1": {"status": "Charging", "timestamp": T1, "errorCode": "NoError"}},
    }


# -- replicas ------------------------------------------------------------------------------

BOOTED: dict[str, Any] = {
    "chargePointId": "CP1",
    "subprotocol": "ocpp2.0.1",
    "reported": {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"},
    "bootedAt": T1,
    "lastSeen": T1,
}
HEARTBEAT_ELSEWHERE: dict[str, Any] = {
    "chargePointId": "CP1",
    "subprotocol": "ocpp2.0.1",
    "lastHeartbeat": T2,
    "lastSeen": T2,
    "connectors": {"1/1": {"status": "Available", "timestamp": T2}},
}
LATER: dict[str, Any] = {
    "chargePointId": "CP1",
    "subprotocol": "ocpp1.6",
    "reported": {"chargePointVendor": "A", "chargePointModel": "B"},
    "bootedAt": T3,
    "lastSeen": T3,
    "connectors": {
        "1/1": {"status": "Faulted", "timestamp": T1},
        "2": {"status": "Charging", "timestamp": T3},
    },
    "transactions": {"lastId": 4, "recent": [{"key": "k", "id": 4}]},
}
DOCUMENTS = [BOOTED, HEARTBEAT_ELSEWHERE, LATER, empty_document("CP1")]


def test_merge_keeps_the_newest_of_each_part() -> None:
    merged = merge(BOOTED, HEARTBEAT_ELSEWHERE)
    assert merged == {
        "chargePointId": "CP1",
        "subprotocol": "ocpp2.0.1",
        "reported": BOOTED["reported"],
        "bootedAt": T1,
        "lastHeartbeat": T2,
        "lastSeen": T2,
        "connectors": {"1/1": {"status": "Available", "timestamp": T2}},
    }
    everything = merge(merged, LATER)
    assert everything["reported"] == LATER["reported"]
    assert everything["subprotocol"] == "ocpp1.6"
    assert everything["connectors"]["1/1"]["status"] == "Available"  # T2 is newer than T1
    assert everything["transactions"]["lastId"] == 4


@pytest.mark.parametrize(("a", "b"), list(itertools.product(DOCUMENTS, repeat=2)))
def test_merge_is_commutative_and_idempotent(a: JsonObject, b: JsonObject) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(a, a) == sanitize(a, "CP1")
    assert merge(merge(a, b), b) == merge(a, b)


@pytest.mark.parametrize(("a", "b", "c"), list(itertools.product(DOCUMENTS, repeat=3)))
def test_merge_is_associative(a: JsonObject, b: JsonObject, c: JsonObject) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@pytest.mark.parametrize(
    "document",
    [None, [], "text", 5, {"chargePointId": "CP2"}, {"no": "id"}],
)
def test_documents_of_another_shape_or_cp_are_ignored(document: object) -> None:
    assert sanitize(document, "CP1") is None


def test_unusable_fields_of_a_document_are_dropped() -> None:
    document = {
        "chargePointId": "CP1",
        "lastSeen": 5,
        "reported": "not an object",
        "connectors": {
            "1/1": {"status": "Available"},
            "1/2": {"status": "Available", "timestamp": T1},
        },
        "transactions": {"lastId": "7", "recent": [{"key": "k", "id": 9}, {"key": 3}]},
        "unknown": True,
    }
    assert sanitize(document, "CP1") == {
        "chargePointId": "CP1",
        "connectors": {"1/2": {"status": "Available", "timestamp": T1}},
        "transactions": {"lastId": 9, "recent": [{"key": "k", "id": 9}]},
    }


# -- topics and settings -------------------------------------------------------------------


def test_topic_templates() -> None:
    template = TopicTemplate("ocpp/{cp_id}/in")
    assert template.topic("CP-1") == "ocpp/CP-1/in"
    assert template.filter == "ocpp/+/in"
    assert template.shared_filter("g") == "$share/g/ocpp/+/in"
    assert template.shared_filter("") == "ocpp/+/in"
    assert template.cp_id("ocpp/CP.1*=|@_/in") == "CP.1*=|@_"
    assert template.cp_id("ocpp/CP1/out") is None
    assert template.cp_id("ocpp/a/b/in") is None


@pytest.mark.parametrize(
    "template", ["in", "{cp_id}{cp_id}/in", "x{cp_id}/in", "{cp_id}/+", "#/{cp_id}", "$SYS/{cp_id}"]
)
def test_unusable_topic_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="topic template"):
        TopicTemplate(template)
    with pytest.raises(ValidationError, match="topic template"):
        Settings(_env_file=None, topic_in=template)  # type: ignore[call-arg]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSOR_MQTT_URL", "mqtt://broker:1884")
    monkeypatch.setenv("PROCESSOR_HEARTBEAT_INTERVAL", "30")
    monkeypatch.setenv("PROCESSOR_SHARE_GROUP", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.mqtt_url == "mqtt://broker:1884"
    assert settings.heartbeat_interval == 30
    assert settings.share_group == ""
    assert Settings(_env_file=None, heartbeat_interval=10).topic_state == "{cp_id}/state"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [("share_group", "a/b"), ("heartbeat_interval", 0), ("qos", 2), ("topic_state", "{cp_id}/in")],
)
def test_bad_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type]
