"""What the status page shows per CP: presence, frames, state documents, transactions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from processor.answers import Inbound, respond
from processor.fleet_status import FleetStatus, boot_summary, parse_presence
from processor.service import topic_matches
from processor.state import apply_change, empty_document

AT = "2024-05-01T10:00:00.000Z"
NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def presence(connected: bool, **fields: object) -> bytes:
    return json.dumps({"connected": connected, **fields}).encode()


def feed(status: FleetStatus, cp_id: str, frame: str, subprotocol: str = "ocpp2.0.1") -> None:
    state = empty_document(cp_id)
    outcome = respond(Inbound(cp_id, frame, NOW, subprotocol), state)
    status.frame(cp_id, frame.encode(), outcome, AT, apply_change(state, outcome.change))


def row(status: FleetStatus, cp_id: str) -> dict[str, object]:
    [found] = [r for r in status.rows() if r["id"] == cp_id]
    return found


def test_presence_decides_online_and_offline_and_keeps_the_close() -> None:
    status = FleetStatus()
    assert status.presence("CP1", presence(True, gateway="gw", since=AT, connection=3)) is None
    assert row(status, "CP1")["status"] == "online"
    status.presence("CP1", presence(False, code=1008, reason="policy", closed_by="gateway", at=AT))
    shown = row(status, "CP1")
    assert shown["status"] == "offline"
    assert shown["presence"] == {"connected": False, "code": 1008, "reason": "policy",
                                 "closed_by": "gateway", "at": AT}  # fmt: skip


def test_a_cp_that_sends_frames_is_online_until_presence_says_otherwise() -> None:
    status = FleetStatus()
    status.presence("CP1", presence(False, code=1000))
    feed(status, "CP1", '[2,"h","Heartbeat",{}]')
    assert row(status, "CP1")["status"] == "online"
    status.presence("CP1", presence(False, code=1006))
    assert row(status, "CP1")["status"] == "offline"


def test_a_cleared_presence_makes_the_cp_unknown() -> None:
    status = FleetStatus()
    status.presence("CP1", presence(True))
    status.presence("CP1", b"")
    assert row(status, "CP1")["status"] == "unknown"
    status.presence("CP2", b"")  # never known: nothing to show
    assert [r["id"] for r in status.rows()] == ["CP1"]


@pytest.mark.parametrize(
    "payload", [b"nope", b"[]", b'{"connected": "yes"}', b"{}", b'{"connected": 1}']
)
def test_unreadable_presence_is_reported_and_ignored(payload: bytes) -> None:
    status = FleetStatus()
    assert status.presence("CP1", payload)
    assert status.rows() == []


def test_presence_fields_of_the_wrong_type_are_left_out() -> None:
    parsed = parse_presence(presence(True, connection="3", gateway=7, since=AT))
    assert parsed == {"connected": True, "since": AT}


def test_boot_summary_in_both_versions() -> None:
    boot_201 = {"reported": {"chargingStation": {"vendorName": "V", "model": "M",
                "firmwareVersion": "1"}}, "bootedAt": AT}  # fmt: skip
    assert boot_summary(boot_201) == {"vendor": "V", "model": "M", "firmware": "1", "at": AT}
    boot_16 = {"reported": {"chargePointVendor": "V", "chargePointModel": "M"}}
    assert boot_summary(boot_16) == {"vendor": "V", "model": "M", "firmware": None, "at": None}
    assert boot_summary({}) is None


def test_ocpp2_transactions_start_and_end() -> None:
    status = FleetStatus()
    started = ('[2,"t1","TransactionEvent",{"eventType":"Started","timestamp":"' + AT + '",'
               '"triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"tx-9",'
               '"chargingState":"Charging"}}]')  # fmt: skip
    feed(status, "CP1", started)
    assert row(status, "CP1")["transaction"] == {
        "id": "tx-9",
        "since": AT,
        "chargingState": "Charging",
    }
    ended = started.replace('"Started"', '"Ended"').replace('"t1"', '"t2"')
    feed(status, "CP1", ended)
    assert row(status, "CP1")["transaction"] is None


def test_ocpp16_transactions_take_the_id_the_processor_gave() -> None:
    status = FleetStatus()
    start = ('[2,"s1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
             '"timestamp":"' + AT + '"}]')  # fmt: skip
    feed(status, "CP1", start, "ocpp1.6")
    assert row(status, "CP1")["transaction"] == {"id": 1, "since": AT, "chargingState": None}
    stop = '[2,"s2","StopTransaction",{"transactionId":1,"meterStop":5,"timestamp":"' + AT + '"}]'
    feed(status, "CP1", stop, "ocpp1.6")
    assert row(status, "CP1")["transaction"] is None


def test_changed_rows_are_handed_out_once() -> None:
    status = FleetStatus()
    status.presence("CP2", presence(True))
    feed(status, "CP1", '[2,"h","Heartbeat",{}]')
    assert [r["id"] for r in status.changed()] == ["CP1", "CP2"]
    assert status.changed() == []
    status.state_document("CP2", {"chargePointId": "CP2", "lastHeartbeat": AT})
    [changed] = status.changed()
    assert changed["lastHeartbeat"] == AT


def test_a_gateway_that_vanished_takes_its_cps_offline() -> None:
    status = FleetStatus()
    online = {"connected": True, "gateway": "gw", "instance": "i-1", "connection": 1}
    assert status.presence("CP1", json.dumps(online).encode()) is None
    assert status.presence("CP2", json.dumps({**online, "instance": "i-2"}).encode()) is None
    will = {"gateway": "gw", "instance": "i-1", "online": False}
    assert status.gateway(json.dumps(will).encode()) is None
    lost = row(status, "CP1")
    assert lost["status"] == "offline"
    assert isinstance(lost["presence"], dict) and lost["presence"]["closed_by"] == "gateway_lost"
    assert row(status, "CP2")["status"] == "online"
    # A document naming the lost instance that arrives later is offline too.
    assert status.presence("CP3", json.dumps(online).encode()) is None
    assert row(status, "CP3")["status"] == "offline"
    assert status.gateway(b"{}") is not None


def test_a_gateway_back_after_its_will_is_believed_again() -> None:
    status = FleetStatus()
    online = {"connected": True, "gateway": "gw", "instance": "i-1", "connection": 1}
    status.presence("CP1", json.dumps(online).encode())
    status.gateway(json.dumps({"gateway": "gw", "instance": "i-1", "online": False}).encode())
    assert row(status, "CP1")["status"] == "offline"
    status.gateway(json.dumps({"gateway": "gw", "instance": "i-1", "online": True}).encode())
    assert row(status, "CP1")["status"] == "offline"  # until its presence says so again
    status.presence("CP1", json.dumps(online).encode())
    assert row(status, "CP1")["status"] == "online"


def test_topic_filters_match_as_mqtt_does() -> None:
    assert topic_matches("ocpp-gateway/gateways/+", "ocpp-gateway/gateways/gw1")
    assert not topic_matches("ocpp-gateway/gateways/+", "ocpp-gateway/gateways/gw1/check")
    assert topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/b", "a")
