"""OCPP-J framing: is a text frame a well-formed RPC message, and what to answer when not.

OCPP-J messages are JSON arrays: CALL `[2, id, action, payload]`, CALLRESULT `[3, id, payload]`,
CALLERROR `[4, id, errorCode, errorDescription, errorDetails]`, with ids of at most 36 characters.
OCPP 2.1 adds CALLRESULTERROR `[5, id, errorCode, errorDescription, errorDetails]` (the caller
could not process a CALLRESULT) and SEND `[6, id, action, payload]` (a message that is never
answered); they are recognised and bridged like the others, whatever the subprotocol.
Error codes differ between OCPP 1.6 and 2.0.x, so the answer depends on the subprotocol.

Frames are read as strict JSON (`strict_json`): `NaN`, `Infinity` and nesting too deep to read
are a FormatViolation, not a crash and not a frame to forward. A message id must be text that
can be sent back: one holding a lone surrogate escape (`"\\ud800"`) cannot be encoded in UTF-8,
so it is unreadable and answered with the id "-1", like a missing id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from gateway import strict_json
from gateway.strict_json import JsonRefused

MAX_MESSAGE_ID_LENGTH = 36
UNREADABLE_MESSAGE_ID = "-1"


class MessageType(IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5  # OCPP 2.1
    SEND = 6  # OCPP 2.1


_EXPECTED_LENGTH = {
    MessageType.CALL: 4,
    MessageType.CALLRESULT: 3,
    MessageType.CALLERROR: 5,
    MessageType.CALLRESULTERROR: 5,
    MessageType.SEND: 4,
}
# Frames with an action; only a CALL expects an answer (a SEND never gets one).
_WITH_ACTION = {MessageType.CALL, MessageType.SEND}
_ERRORS = {MessageType.CALLERROR, MessageType.CALLRESULTERROR}

# OCPP 2.0.x error code -> OCPP 1.6 error code (1.6 has no RpcFrameworkError, no
# MessageTypeNotSupported, and spells FormatViolation "FormationViolation").
_OCPP16_ERROR_CODES = {
    "RpcFrameworkError": "FormationViolation",
    "FormatViolation": "FormationViolation",
    "MessageTypeNotSupported": "NotSupported",
}


@dataclass(frozen=True)
class FrameProblem:
    """Why a frame is not forwarded, and whether the sender is owed a CALLERROR.

    Responses (CALLRESULT/CALLERROR/CALLRESULTERROR) and SENDs that are malformed are never
    answered: answering an answer would start an error ping-pong, and a SEND has no answer by
    definition, so they are dropped, logged and counted instead.
    """

    error_code: str
    description: str
    message_id: str
    answer: bool


@dataclass(frozen=True)
class Frame:
    message_type: MessageType
    message_id: str
    action: str | None


def frame_problem(text: str) -> FrameProblem | None:
    """None for a well-formed frame, else what `parse_frame` reports; for the hot path.

    Every frame crosses this check in both directions, and nearly all are well formed: they
    are recognised without building an envelope, and anything else gets the full diagnosis.
    """
    try:
        message = strict_json.decode(text)
    except ValueError:
        message = None
    if type(message) is list and _is_well_formed(message):
        return None
    problem = parse_frame(text)
    assert isinstance(problem, FrameProblem), "a frame the fast check refused parsed as valid"
    return problem


def _is_well_formed(message: list[Any]) -> bool:
    length = len(message)
    if length < 3 or type(message[0]) is not int:
        return False
    message_id = message[1]
    if type(message_id) is not str or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return False
    if not (message_id.isascii() or _is_encodable(message_id)):
        return False
    kind = message[0]
    if kind == MessageType.CALL or kind == MessageType.SEND:
        action = message[2]
        return length == 4 and type(action) is str and action != "" and type(message[3]) is dict
    if kind == MessageType.CALLRESULT:
        return length == 3 and type(message[2]) is dict
    if kind == MessageType.CALLERROR or kind == MessageType.CALLRESULTERROR:
        return (
            length == 5
            and type(message[2]) is str
            and type(message[3]) is str
            and type(message[4]) is dict
        )
    return False


def parse_frame(text: str) -> Frame | FrameProblem:
    """Check a frame's structure; return its envelope, or the problem to report."""
    try:
        message = strict_json.decode(text)
    except JsonRefused as exc:
        return FrameProblem("FormatViolation", str(exc), UNREADABLE_MESSAGE_ID, answer=True)
    except ValueError:
        return _unreadable("the frame is not valid JSON")
    if not isinstance(message, list) or not message:
        return _unreadable("the frame is not a non-empty JSON array")
    message_type = message[0]
    message_id = _readable_id(message)
    if type(message_type) is not int:
        return _unreadable("the message type is not an integer", message_id)
    if message_type not in _EXPECTED_LENGTH:
        return FrameProblem(
            "MessageTypeNotSupported",
            f"message type {message_type} is not supported",
            message_id or UNREADABLE_MESSAGE_ID,
            answer=True,
        )
    kind = MessageType(message_type)
    is_call = kind is MessageType.CALL
    has_action = kind in _WITH_ACTION
    if message_id is None:
        return FrameProblem(
            "RpcFrameworkError", _id_problem(message), UNREADABLE_MESSAGE_ID, answer=is_call
        )
    problem = _check_fields(kind, message)
    if problem is not None:
        return FrameProblem(problem[0], problem[1], message_id, answer=is_call)
    return Frame(kind, message_id, message[2] if has_action else None)


def _check_fields(kind: MessageType, message: list[Any]) -> tuple[str, str] | None:
    expected = _EXPECTED_LENGTH[kind]
    if len(message) != expected:
        return (
            "RpcFrameworkError",
            f"a {kind.name} has {expected} elements, this frame has {len(message)}",
        )
    if kind in _WITH_ACTION:
        if not isinstance(message[2], str) or not message[2]:
            return ("RpcFrameworkError", "the action must be a non-empty string")
        if not isinstance(message[3], dict):
            return ("FormatViolation", f"the payload of a {kind.name} must be a JSON object")
    elif kind is MessageType.CALLRESULT:
        if not isinstance(message[2], dict):
            return ("FormatViolation", "the payload of a CALLRESULT must be a JSON object")
    elif kind in _ERRORS and not (
        isinstance(message[2], str) and isinstance(message[3], str) and isinstance(message[4], dict)
    ):
        return (
            "FormatViolation",
            f"a {kind.name} is [{kind.value}, id, errorCode, errorDescription, errorDetails] "
            "with two strings and an object",
        )
    return None


def _readable_id(message: list[Any]) -> str | None:
    if len(message) < 2:
        return None
    candidate = message[1]
    if (
        isinstance(candidate, str)
        and 0 < len(candidate) <= MAX_MESSAGE_ID_LENGTH
        and _is_encodable(candidate)
    ):
        return candidate
    return None


def _id_problem(message: list[Any]) -> str:
    candidate = message[1] if len(message) > 1 else None
    if isinstance(candidate, str) and 0 < len(candidate) <= MAX_MESSAGE_ID_LENGTH:
        return "the message id is not valid Unicode: it holds a lone surrogate escape"
    return f"the message id must be a string of 1 to {MAX_MESSAGE_ID_LENGTH} characters"


def _is_encodable(text: str) -> bool:
    """False for text with lone surrogates, which JSON escapes can spell but UTF-8 cannot."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _unreadable(description: str, message_id: str | None = None) -> FrameProblem:
    return FrameProblem(
        "RpcFrameworkError", description, message_id or UNREADABLE_MESSAGE_ID, answer=True
    )


def error_code_for(error_code: str, subprotocol: str | None) -> str:
    if subprotocol == "ocpp1.6":
        return _OCPP16_ERROR_CODES.get(error_code, error_code)
    return error_code


def call_error(problem: FrameProblem, subprotocol: str | None) -> str:
    """The CALLERROR frame answering `problem`, always valid JSON."""
    return json.dumps(
        [
            MessageType.CALLERROR,
            problem.message_id,
            error_code_for(problem.error_code, subprotocol),
            problem.description,
            {},
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
