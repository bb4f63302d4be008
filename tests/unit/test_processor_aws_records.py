"""Reading the SQS bodies the IoT rule writes: both rule forms, and records that cannot be read."""

from __future__ import annotations

import base64
import json

import pytest

from processor.aws_records import BadRecord, IotMessage, decode_body

FRAME = '[2,"m1","Heartbeat",{}]'


def encoded(frame: str | bytes) -> str:
    raw = frame.encode() if isinstance(frame, str) else frame
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"payload": encoded(FRAME), "chargePointId": "CP1", "subprotocol": "ocpp1.6"},
            IotMessage("CP1", FRAME.encode(), "ocpp1.6"),
        ),
        (
            {"payload": encoded(FRAME), "chargePointId": "CP1", "subprotocol": ["ocpp2.0", "x"]},
            IotMessage("CP1", FRAME.encode(), "ocpp2.0"),
        ),
        (
            {"payload": encoded(FRAME), "chargePointId": "CP1", "subprotocol": []},
            IotMessage("CP1", FRAME.encode(), None),
        ),
        (
            {"message": json.loads(FRAME), "chargePointId": "CP.1"},
            IotMessage("CP.1", FRAME, None),
        ),
        ({"message": "raw text", "chargePointId": "CP1"}, IotMessage("CP1", "raw text", None)),
        (
            {"payload": encoded(b"\xff not utf-8"), "chargePointId": "CP1"},
            IotMessage("CP1", b"\xff not utf-8", None),
        ),
    ],
)
def test_both_rule_forms_are_read(body: dict[str, object], expected: IotMessage) -> None:
    assert decode_body(json.dumps(body)) == expected


def test_the_sample_rule_form_keeps_unicode() -> None:
    body = json.dumps(
        {"message": [2, "m", "DataTransfer", {"data": "Grüße ⚡"}], "chargePointId": "C"}
    )
    assert decode_body(body).frame == '[2,"m","DataTransfer",{"data":"Grüße ⚡"}]'


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "no text body"),
        ("not json", "not JSON"),
        (json.dumps([2, "m", "Heartbeat", {}]), "not a JSON object"),
        (json.dumps({"payload": encoded(FRAME)}), "no chargePointId"),
        (json.dumps({"payload": encoded(FRAME), "chargePointId": ""}), "no chargePointId"),
        (json.dumps({"payload": encoded(FRAME), "chargePointId": 7}), "no chargePointId"),
        (json.dumps({"payload": encoded(FRAME), "chargePointId": "x" * 49}), "no chargePointId"),
        (json.dumps({"payload": encoded(FRAME), "chargePointId": "a/b"}), "MQTT topic"),
        (json.dumps({"payload": encoded(FRAME), "chargePointId": "+"}), "MQTT topic"),
        (json.dumps({"payload": "not base64!", "chargePointId": "CP1"}), "not valid base64"),
        (json.dumps({"payload": 5, "chargePointId": "CP1"}), "base64 text"),
        (json.dumps({"chargePointId": "CP1"}), "neither `payload`"),
    ],
)
def test_unreadable_records_say_why(body: object, reason: str) -> None:
    with pytest.raises(BadRecord, match=reason):
        decode_body(body)
