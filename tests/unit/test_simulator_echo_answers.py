"""The echo central system's answers (used by the simulator's tests and its benchmark)."""

from __future__ import annotations

import json

from tests.support.echo_csms import answer, cp_id_of


def test_boot_and_heartbeat_answers_carry_the_call_id() -> None:
    boot = json.loads(answer('[2,"7","BootNotification",{}]', "ocpp2.0.1", 30) or "")
    assert boot[:2] == [3, "7"]
    assert boot[2]["interval"] == 30
    assert boot[2]["status"] == "Accepted"
    heartbeat = json.loads(answer('[2, "x-1", "Heartbeat", {}]', "ocpp2.0.1", 30) or "")
    assert heartbeat[:2] == [3, "x-1"]
    assert set(heartbeat[2]) == {"currentTime"}


def test_authorize_answer_follows_the_ocpp_version() -> None:
    v201 = json.loads(answer('[2,"1","Authorize",{}]', "ocpp2.0.1", 10) or "")
    v16 = json.loads(answer('[2,"1","Authorize",{}]', "ocpp1.6", 10) or "")
    assert v201[2] == {"idTokenInfo": {"status": "Accepted"}}
    assert v16[2] == {"idTagInfo": {"status": "Accepted"}}


def test_answers_are_not_answered_and_garbage_gets_a_callerror() -> None:
    assert answer('[3,"1",{}]', "ocpp2.0.1", 10) is None
    assert answer('[4,"1","GenericError","",{}]', "ocpp2.0.1", 10) is None
    for garbage in ("not json", "{}", "[2]", '[2, 5, "Heartbeat", {}]'):
        reply = json.loads(answer(garbage, "ocpp2.0.1", 10) or "")
        assert reply[:3] == [4, "-1", "FormatViolation"]


def test_cp_id_is_the_last_path_segment_decoded() -> None:
    assert cp_id_of("/CP1") == "CP1"
    assert cp_id_of("/ocpp/CP%201?x=1") == "CP 1"
