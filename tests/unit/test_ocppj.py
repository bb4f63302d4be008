import itertools
import json

import pytest

from gateway.ocppj import (
    Frame,
    FrameProblem,
    MessageType,
    call_error,
    frame_problem,
    parse_frame,
)


@pytest.mark.parametrize(
    ("text", "kind", "message_id", "action"),
    [
        ('[2,"1","BootNotification",{}]', MessageType.CALL, "1", "BootNotification"),
        ('[3,"abc",{"currentTime":"x"}]', MessageType.CALLRESULT, "abc", None),
        ('[4,"abc","NotImplemented","",{}]', MessageType.CALLERROR, "abc", None),
        ('[5,"abc","InternalError","",{}]', MessageType.CALLRESULTERROR, "abc", None),
        (
            '[6,"abc","NotifyPeriodicEventStream",{}]',
            MessageType.SEND,
            "abc",
            "NotifyPeriodicEventStream",
        ),
        ('[2,"' + "i" * 36 + '","Heartbeat",{}]', MessageType.CALL, "i" * 36, "Heartbeat"),
        ('[2,"ü","Datentransfer",{"text":"Grüße"}]', MessageType.CALL, "ü", "Datentransfer"),
    ],
)
def test_well_formed_frames(
    text: str, kind: MessageType, message_id: str, action: str | None
) -> None:
    assert parse_frame(text) == Frame(kind, message_id, action)
    assert frame_problem(text) is None


@pytest.mark.parametrize(
    ("text", "code", "message_id", "answer"),
    [
        ("not json", "RpcFrameworkError", "-1", True),
        ("{}", "RpcFrameworkError", "-1", True),
        ("[]", "RpcFrameworkError", "-1", True),
        ('"text"', "RpcFrameworkError", "-1", True),
        ('["2","7","Heartbeat",{}]', "RpcFrameworkError", "7", True),
        ('[true,"7","Heartbeat",{}]', "RpcFrameworkError", "7", True),
        ('[2,7,"Heartbeat",{}]', "RpcFrameworkError", "-1", True),
        ('[2,"","Heartbeat",{}]', "RpcFrameworkError", "-1", True),
        ('[2,"' + "i" * 37 + '","Heartbeat",{}]', "RpcFrameworkError", "-1", True),
        ('[2,"7","Heartbeat"]', "RpcFrameworkError", "7", True),
        ('[2,"7",5,{}]', "RpcFrameworkError", "7", True),
        ('[2,"7","Heartbeat",[]]', "FormatViolation", "7", True),
        ('[7,"7",{}]', "MessageTypeNotSupported", "7", True),
        ('[1,"7","Notify",{}]', "MessageTypeNotSupported", "7", True),
        ('[5,"7",{}]', "RpcFrameworkError", "7", False),
        ('[5,"7","InternalError","",[]]', "FormatViolation", "7", False),
        ('[6,"7","Notify"]', "RpcFrameworkError", "7", False),
        ('[6,"7","",{}]', "RpcFrameworkError", "7", False),
        ('[6,"7","Notify",[]]', "FormatViolation", "7", False),
        ('[3,"7"]', "RpcFrameworkError", "7", False),
        ('[3,"7",[]]', "FormatViolation", "7", False),
        ('[4,"7","NotImplemented"]', "RpcFrameworkError", "7", False),
        ('[4,"7",1,"",{}]', "FormatViolation", "7", False),
        ("[" * 5000 + "]" * 5000, "FormatViolation", "-1", True),
        ('[2,"7","Heartbeat",' + "[" * 5000 + "]" * 5000 + "]", "FormatViolation", "-1", True),
        ('[2,"7","X",{"v":NaN}]', "FormatViolation", "-1", True),
        ('[2,"7","X",{"v":Infinity}]', "FormatViolation", "-1", True),
        ('[3,"7",{"v":[-Infinity]}]', "FormatViolation", "-1", True),
        ('[2,"\\ud800",1,{},null]', "RpcFrameworkError", "-1", True),
        ('[2,"\\udc00","Heartbeat",{}]', "RpcFrameworkError", "-1", True),
        ('[3,"a\\ud800",{}]', "RpcFrameworkError", "-1", False),
    ],
)
def test_malformed_frames(text: str, code: str, message_id: str, answer: bool) -> None:
    problem = parse_frame(text)
    assert isinstance(problem, FrameProblem)
    assert (problem.error_code, problem.message_id, problem.answer) == (code, message_id, answer)
    assert problem.description
    assert frame_problem(text) == problem


def test_call_error_is_valid_ocpp_json() -> None:
    problem = parse_frame('[2,"id-ü","X",[]]')
    assert isinstance(problem, FrameProblem)
    frame = json.loads(call_error(problem, "ocpp2.0.1"))
    assert frame == [4, "id-ü", "FormatViolation", problem.description, {}]
    assert isinstance(parse_frame(call_error(problem, "ocpp2.0.1")), Frame)


@pytest.mark.parametrize(
    ("text", "code_16"),
    [
        ("garbage", "FormationViolation"),
        ('[2,"7","X",[]]', "FormationViolation"),
        ('[9,"7"]', "NotSupported"),
    ],
)
def test_ocpp16_error_codes(text: str, code_16: str) -> None:
    problem = parse_frame(text)
    assert isinstance(problem, FrameProblem)
    assert json.loads(call_error(problem, "ocpp1.6"))[2] == code_16


ELEMENTS = [
    "2",
    "3",
    "4",
    "6",
    "7",
    "2.0",
    "true",
    '"7"',
    '""',
    '"' + "i" * 37 + '"',
    '"Heartbeat"',
]
ELEMENTS += ["{}", "[]", "null", '{"a":[1]}', "5", '"\\ud800"', "NaN", '"\\ud83d\\ude97"']
LONG_ELEMENTS = [
    "2",
    "4",
    "5",
    "6",
    '"7"',
    '"x"',
    "{}",
    "[]",
]  # for 5 and 6 elements: fewer combinations


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 6])
def test_the_fast_check_agrees_with_the_full_diagnosis(length: int) -> None:
    choices = LONG_ELEMENTS if length > 4 else ELEMENTS
    for elements in itertools.product(choices, repeat=length):
        text = "[" + ",".join(elements) + "]"
        full = parse_frame(text)
        assert frame_problem(text) == (None if isinstance(full, Frame) else full), text


def test_a_surrogate_pair_in_the_message_id_is_a_valid_id() -> None:
    text = '[2,"\\ud83d\\ude97","Heartbeat",{}]'
    assert parse_frame(text) == Frame(MessageType.CALL, "\U0001f697", "Heartbeat")
    assert frame_problem(text) is None


@pytest.mark.parametrize(
    "text", ['[2,"\\ud800",1,{},null]', "[" * 5000 + "]" * 5000, '[2,"1","X",{"v":NaN}]']
)
def test_every_call_error_can_be_sent_as_utf8(text: str) -> None:
    problem = parse_frame(text)
    assert isinstance(problem, FrameProblem)
    for subprotocol in ("ocpp1.6", "ocpp2.0.1"):
        answer = call_error(problem, subprotocol).encode()
        assert json.loads(answer)[1] == "-1"
