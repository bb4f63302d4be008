"""What the processor answers, for every handled action in OCPP 2.0.1 and 1.6, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from processor import answers
from processor.answers import (
    AnswerConfig,
    Inbound,
    Kind,
    Outcome,
    format_time,
    handled_actions,
    needs_state,
    respond,
)
from processor.state import (
    ConnectorStatus,
    JsonObject,
    StateChange,
    apply_change,
    empty_document,
)
from processor.validation import OcppVersion, check_response

NOW = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
NOW_TEXT = "2024-05-01T10:00:00.123Z"

BOOT_201 = {
    "chargingStation": {
        "model": "ABC 123 XYZ",
        "vendorName": "Acme Electrical Systems",
        "firmwareVersion": "10.9.8.ABC",
        "serialNumber": "CP1234567890A01",
        "modem": {"iccid": "891004234814455936F", "imsi": "310410123456789"},
    },
    "reason": "PowerUp",
}
BOOT_16 = {
    "chargePointVendor": "Acme",
    "chargePointModel": "M1",
    "chargePointSerialNumber": "S1",
    "firmwareVersion": "1.0",
}
START_16 = {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2024-05-01T09:59:00Z"}

# A valid request per handled action, and the exact answer payload expected.
CASES_201: dict[str, tuple[JsonObject, JsonObject]] = {
    "BootNotification": (
        BOOT_201,
        {"currentTime": NOW_TEXT, "interval": 10, "status": "Accepted"},
    ),
    "Heartbeat": ({}, {"currentTime": NOW_TEXT}),
    "StatusNotification": (
        {
            "timestamp": "2024-05-01T09:59:59Z",
            "connectorStatus": "Available",
            "evseId": 1,
            "connectorId": 2,
        },
        {},
    ),
    "MeterValues": (
        {
            "evseId": 1,
            "meterValue": [
                {"timestamp": "2024-05-01T09:59:59Z", "sampledValue": [{"value": 12.5}]}
            ],
        },
        {},
    ),
    "TransactionEvent": (
        {
            "eventType": "Started",
            "timestamp": "2024-05-01T09:59:59Z",
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "tx-1"},
            "idToken": {"idToken": "TOKEN1", "type": "ISO14443"},
        },
        {"idTokenInfo": {"status": "Accepted"}},
    ),
    "Authorize": (
        {"idToken": {"idToken": "TOKEN1", "type": "ISO14443"}},
        {"idTokenInfo": {"status": "Accepted"}},
    ),
}
CASES_16: dict[str, tuple[JsonObject, JsonObject]] = {
    "BootNotification": (BOOT_16, {"currentTime": NOW_TEXT, "interval": 10, "status": "Accepted"}),
    "Heartbeat": ({}, {"currentTime": NOW_TEXT}),
    "StatusNotification": ({"connectorId": 1, "errorCode": "NoError", "status": "Charging"}, {}),
    "MeterValues": (
        {
            "connectorId": 1,
            "transactionId": 1,
            "meterValue": [{"timestamp": "2024-05-01T09:59:59Z", "sampledValue": [{"value": "5"}]}],
        },
        {},
    ),
    "Authorize": ({"idTag": "TAG1"}, {"idTagInfo": {"status": "Accepted"}}),
    "StartTransaction": (START_16, {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}),
    "StopTransaction": (
        {"transactionId": 1, "idTag": "TAG1", "meterStop": 10, "timestamp": "2024-05-01T10:00:00Z"},
        {"idTagInfo": {"status": "Accepted"}},
    ),
}


def call(action: str, payload: JsonObject, message_id: str = "m1") -> str:
    return json.dumps([2, message_id, action, payload])


def answer(
    frame: str | bytes,
    subprotocol: str | None = "ocpp2.0.1",
    state: JsonObject | None = None,
    config: AnswerConfig | None = None,
) -> Outcome:
    return respond(Inbound("CP1", frame, NOW, subprotocol), state or empty_document("CP1"), config)


def reply_of(outcome: Outcome) -> list[Any]:
    assert outcome.reply is not None
    frame = json.loads(outcome.reply)
    assert isinstance(frame, list)
    return frame


def test_every_handled_action_has_a_case() -> None:
    assert handled_actions(OcppVersion.V201) == sorted(CASES_201)
    assert handled_actions(OcppVersion.V16) == sorted(CASES_16)


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.0"])
@pytest.mark.parametrize("action", sorted(CASES_201))
def test_ocpp201_calls_get_valid_answers(subprotocol: str, action: str) -> None:
    request, expected = CASES_201[action]
    outcome = answer(call(action, request), subprotocol)
    assert outcome.kind is Kind.CALL
    assert outcome.error_code is None
    assert reply_of(outcome) == [3, "m1", expected]
    assert check_response(OcppVersion.V201, action, expected) is None
    assert outcome.change.seen_at == NOW_TEXT
    assert outcome.change.subprotocol == subprotocol


@pytest.mark.parametrize("action", sorted(CASES_16))
def test_ocpp16_calls_get_valid_answers(action: str) -> None:
    request, expected = CASES_16[action]
    outcome = answer(call(action, request), "ocpp1.6")
    assert outcome.error_code is None
    assert reply_of(outcome) == [3, "m1", expected]
    assert check_response(OcppVersion.V16, action, expected) is None


def test_boot_answer_matches_what_users_see_today() -> None:
    frame = json.dumps(
        [2, "0678cb2a-a7a2-42bc-8037-d01164e77ac6", "BootNotification", BOOT_201],
        separators=(",", ":"),
    )
    outcome = answer(frame)
    assert outcome.reply == (
        '[3,"0678cb2a-a7a2-42bc-8037-d01164e77ac6",'
        '{"currentTime":"2024-05-01T10:00:00.123Z","interval":10,"status":"Accepted"}]'
    )
    assert outcome.change.boot == BOOT_201


def test_heartbeat_interval_is_configurable() -> None:
    outcome = answer(
        call("BootNotification", BOOT_201), config=AnswerConfig(heartbeat_interval=300)
    )
    assert reply_of(outcome)[2]["interval"] == 300


def test_times_are_utc_with_milliseconds() -> None:
    assert format_time(NOW) == NOW_TEXT
    paris = timezone(timedelta(hours=2))
    assert format_time(datetime(2024, 5, 1, 12, 0, tzinfo=paris)) == "2024-05-01T10:00:00.000Z"


def test_boot_and_heartbeat_are_recorded() -> None:
    booted = apply_change(empty_document("CP1"), answer(call("BootNotification", BOOT_201)).change)
    assert booted == {
        "chargePointId": "CP1",
        "subprotocol": "ocpp2.0.1",
        "reported": BOOT_201,
        "bootedAt": NOW_TEXT,
        "lastSeen": NOW_TEXT,
    }
    beat = answer(call("Heartbeat", {}), state=booted)
    assert beat.change.heartbeat_at == NOW_TEXT
    assert apply_change(booted, beat.change)["lastHeartbeat"] == NOW_TEXT


def test_status_is_recorded_per_evse_and_connector() -> None:
    outcome = answer(call("StatusNotification", CASES_201["StatusNotification"][0]))
    assert outcome.change.connector == (
        "1/2",
        ConnectorStatus("Available", "2024-05-01T09:59:59Z"),
    )
    outcome_16 = answer(
        call(
            "StatusNotification",
            {"connectorId": 0, "errorCode": "GroundFailure", "status": "Faulted"},
        ),
        "ocpp1.6",
    )
    assert outcome_16.change.connector == (
        "0",
        ConnectorStatus("Faulted", NOW_TEXT, "GroundFailure"),
    )


def test_transaction_event_without_id_token_gets_an_empty_answer() -> None:
    request = dict(CASES_201["TransactionEvent"][0])
    del request["idToken"]
    assert reply_of(answer(call("TransactionEvent", request))) == [3, "m1", {}]


def test_stop_transaction_without_id_tag_gets_an_empty_answer() -> None:
    request = {"transactionId": 1, "meterStop": 10, "timestamp": "2024-05-01T10:00:00Z"}
    assert reply_of(answer(call("StopTransaction", request), "ocpp1.6")) == [3, "m1", {}]


def test_start_transaction_ids_count_up_per_charge_point() -> None:
    state = empty_document("CP1")
    ids = []
    for n in range(3):
        outcome = answer(call("StartTransaction", START_16, f"s{n}"), "ocpp1.6", state)
        ids.append(reply_of(outcome)[2]["transactionId"])
        state = apply_change(state, outcome.change)
    assert ids == [1, 2, 3]
    assert state["transactions"]["lastId"] == 3


def test_a_repeated_start_transaction_gets_the_same_id_and_creates_nothing() -> None:
    first = answer(call("StartTransaction", START_16, "s1"), "ocpp1.6")
    state = apply_change(empty_document("CP1"), first.change)
    again = answer(call("StartTransaction", START_16, "s1"), "ocpp1.6", state)
    assert again.reply == first.reply
    assert again.change.transaction is None
    assert apply_change(state, again.change)["transactions"] == state["transactions"]


def test_a_reused_message_id_with_another_payload_is_a_new_transaction() -> None:
    first = answer(call("StartTransaction", START_16, "1"), "ocpp1.6")
    state = apply_change(empty_document("CP1"), first.change)
    later = dict(START_16, timestamp="2024-05-02T08:00:00Z")
    second = answer(call("StartTransaction", later, "1"), "ocpp1.6", state)
    assert reply_of(second)[2]["transactionId"] == 2


def test_only_start_transaction_needs_the_recorded_state() -> None:
    def inbound(frame: str, subprotocol: str) -> Inbound:
        return Inbound("CP1", frame, NOW, subprotocol)

    assert needs_state(inbound(call("StartTransaction", START_16), "ocpp1.6"))
    assert not needs_state(inbound(call("Heartbeat", {}), "ocpp1.6"))
    assert not needs_state(inbound(call("StartTransaction", START_16), "ocpp2.0.1"))
    assert not needs_state(inbound("garbage", "ocpp1.6"))


# -- calls that cannot be answered with a CALLRESULT ---------------------------------------


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp1.6"])
@pytest.mark.parametrize("action", ["MadeUpAction", "DataTransfer", "FirmwareStatusNotification"])
def test_anything_else_gets_not_implemented(subprotocol: str, action: str) -> None:
    outcome = answer(call(action, {}, "x1"), subprotocol)
    frame = reply_of(outcome)
    assert frame[:3] == [4, "x1", "NotImplemented"]
    assert action in frame[3]
    assert isinstance(frame[4], dict)
    assert outcome.change.seen_at == NOW_TEXT


@pytest.mark.parametrize(
    ("subprotocol", "action", "payload", "code"),
    [
        ("ocpp2.0.1", "BootNotification", {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        ("ocpp1.6", "BootNotification", {"chargePointVendor": "A"}, "OccurenceConstraintViolation"),
        (
            "ocpp2.0.1",
            "BootNotification",
            {"chargingStation": {"model": 5, "vendorName": "A"}, "reason": "PowerUp"},
            "TypeConstraintViolation",
        ),
        (
            "ocpp1.6",
            "BootNotification",
            {"chargePointVendor": "A" * 21, "chargePointModel": "M"},
            "TypeConstraintViolation",
        ),
        (
            "ocpp2.0.1",
            "BootNotification",
            {"chargingStation": {"model": "M", "vendorName": "A"}, "reason": "Bored"},
            "PropertyConstraintViolation",
        ),
        (
            "ocpp1.6",
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"},
            "PropertyConstraintViolation",
        ),
        ("ocpp2.0.1", "Heartbeat", {"extra": 1}, "FormatViolation"),
        ("ocpp1.6", "Heartbeat", {"extra": 1}, "FormationViolation"),
        ("ocpp2.0", "Authorize", {}, "OccurrenceConstraintViolation"),
    ],
)
def test_invalid_payloads_get_the_callerror_for_the_violation(
    subprotocol: str, action: str, payload: JsonObject, code: str
) -> None:
    outcome = answer(call(action, payload, "bad-1"), subprotocol)
    frame = reply_of(outcome)
    assert frame[:3] == [4, "bad-1", code]
    assert 0 < len(frame[3]) <= 255
    assert "path" in frame[4]
    assert outcome.error_code == code
    assert outcome.change == StateChange(seen_at=NOW_TEXT, subprotocol=subprotocol)


def test_a_very_long_bad_value_keeps_the_description_short() -> None:
    payload = {"chargingStation": {"model": "M" * 5000, "vendorName": "A"}, "reason": "PowerUp"}
    frame = reply_of(answer(call("BootNotification", payload)))
    assert len(frame[3]) <= 255


def test_a_failing_handler_still_gives_a_callerror(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(request: object) -> object:
        raise KeyError("something the schema let through")

    monkeypatch.setitem(answers._HANDLERS[OcppVersion.V201], "Heartbeat", broken)
    frame = reply_of(answer(call("Heartbeat", {}, "h1")))
    assert frame[:3] == [4, "h1", "InternalError"]


@pytest.mark.parametrize("subprotocol", [None, "", "ocpp9.9", "wamp"])
def test_missing_or_unknown_subprotocol_is_treated_as_201(subprotocol: str | None) -> None:
    outcome = answer(call("BootNotification", BOOT_201), subprotocol)
    assert outcome.subprotocol == "ocpp2.0.1"
    assert reply_of(outcome)[0] == 3
    refused = answer(call("BootNotification", BOOT_16), subprotocol)
    assert reply_of(refused)[2] == "OccurrenceConstraintViolation"  # 2.0.1 spelling


# -- frames that are not calls -------------------------------------------------------------


def test_a_callresult_from_the_cp_is_recorded_not_answered() -> None:
    outcome = answer('[3,"csms-1",{"status":"Accepted"}]')
    assert outcome.kind is Kind.RESPONSE
    assert outcome.reply is None
    assert outcome.message_id == "csms-1"
    assert outcome.change == StateChange(seen_at=NOW_TEXT, subprotocol="ocpp2.0.1")


def test_a_callerror_from_the_cp_is_recorded_not_answered() -> None:
    outcome = answer('[4,"csms-2","NotSupported","no such thing",{}]', "ocpp1.6")
    assert outcome.kind is Kind.RESPONSE
    assert outcome.reply is None
    assert outcome.error_code == "NotSupported"
    assert outcome.detail == "no such thing"


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        b"\xff\xfe\x00",
        "{}",
        '"a string"',
        "[]",
        "[2]",
        '[9,"id",{}]',
        '[2,"id","Heartbeat"]',
        '[2,"id","Heartbeat",{},"extra"]',
        '[2,42,"Heartbeat",{}]',
        '[2,"","Heartbeat",{}]',
        '[2,"' + "x" * 37 + '","Heartbeat",{}]',
        '[2,"id",7,{}]',
        '[2,"id","",{}]',
        '[2,"id","Heartbeat",[]]',
        '[3,"id",[]]',
        '[4,"id",5,"description",{}]',
    ],
)
def test_frames_that_are_not_ocppj_are_dropped(frame: str | bytes) -> None:
    outcome = answer(frame)
    assert outcome.kind is Kind.INVALID
    assert outcome.reply is None
    assert outcome.change.is_empty
    assert outcome.detail


def test_bytes_frames_are_read_as_utf8() -> None:
    frame = call("Authorize", {"idToken": {"idToken": "Grüße⚡", "type": "Central"}}).encode()
    assert reply_of(answer(frame))[0] == 3


@pytest.mark.parametrize(
    "frame",
    [
        *(call(action, request) for action, (request, _) in CASES_201.items()),
        *(call(action, {}) for action in CASES_201),
        call("Unknown", {}),
        call("Heartbeat", {"x": 1}),
    ],
)
@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp1.6"])
def test_never_a_callresult_carrying_an_error(frame: str, subprotocol: str) -> None:
    outcome = answer(frame, subprotocol)
    sent = reply_of(outcome)
    if outcome.error_code is None:
        assert sent[0] == 3
        assert "error" not in json.dumps(sent[2]).lower()
    else:
        assert sent[0] == 4
        assert sent[2] == outcome.error_code


# -- OCPP 2.1 --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(CASES_201))
def test_ocpp21_calls_get_answers_valid_for_the_21_schemas(action: str) -> None:
    request, expected = CASES_201[action]
    outcome = answer(call(action, request), "ocpp2.1")
    assert outcome.kind is Kind.CALL
    assert outcome.subprotocol == "ocpp2.1"
    assert outcome.error_code is None
    assert reply_of(outcome) == [3, "m1", expected]
    assert check_response(OcppVersion.V21, action, expected) is None


def test_ocpp21_requests_are_checked_against_the_21_schemas() -> None:
    refused = answer(call("BootNotification", BOOT_16), "ocpp2.1")
    assert reply_of(refused)[:3] == [4, "m1", "OccurrenceConstraintViolation"]
    unknown = answer(call("NotifyAllowedEnergyTransfer", {}), "ocpp2.1")
    assert reply_of(unknown)[:3] == [4, "m1", "NotImplemented"]


def test_an_ocpp21_callresulterror_is_recorded_not_answered() -> None:
    outcome = answer('[5,"csms-3","InternalError","cannot process it",{}]', "ocpp2.1")
    assert outcome.kind is Kind.RESPONSE
    assert outcome.reply is None
    assert (outcome.message_id, outcome.error_code) == ("csms-3", "InternalError")
    assert outcome.detail == "cannot process it"
    assert outcome.change == StateChange(seen_at=NOW_TEXT, subprotocol="ocpp2.1")


def test_an_ocpp21_send_is_recorded_not_answered() -> None:
    outcome = answer('[6,"s1","NotifyPeriodicEventStream",{"id":1}]', "ocpp2.1")
    assert outcome.kind is Kind.RESPONSE
    assert outcome.reply is None
    assert (outcome.message_id, outcome.action) == ("s1", "NotifyPeriodicEventStream")
    assert outcome.error_code is None


@pytest.mark.parametrize(
    "frame",
    [
        '[5,"id",{}]',
        '[5,"id","InternalError","",[]]',
        '[5,7,"InternalError","",{}]',
        '[6,"id","Notify"]',
        '[6,"id","",{}]',
        '[6,"","Notify",{}]',
        '[6,"id","Notify",[]]',
    ],
)
def test_malformed_ocpp21_frames_are_dropped(frame: str) -> None:
    outcome = answer(frame, "ocpp2.1")
    assert outcome.kind is Kind.INVALID
    assert outcome.reply is None
    assert outcome.detail
