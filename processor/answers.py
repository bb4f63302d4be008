"""What to answer a charge point, decided without any I/O.

`respond` takes one frame a CP sent (as the gateway published it to `<cpId>/in`), the CP's
current state document and the time, and returns the OCPP-J frame to send back (or None) and
the state change to record. The local MQTT service and the AWS Lambda both use it.

Answers are built from the `ocpp` library's message types and requests are checked against
its JSON schemas. A CALL that cannot be answered gets a CALLERROR, never a CALLRESULT carrying
an error; CALLRESULTs and CALLERRORs from the CP are recorded and never answered, and so are
OCPP 2.1's CALLRESULTERROR (type 5) and SEND (type 6); a frame that is not OCPP-J is dropped (the
gateway has already answered the CP).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import InternalError, OCPPError
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.messages import Call, CallError, CallResult, unpack
from ocpp.v16 import call_result as v16_result
from ocpp.v16 import datatypes as v16_types
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus
from ocpp.v201 import call_result as v201_result
from ocpp.v201 import datatypes as v201_types
from ocpp.v201.enums import AuthorizationStatusEnumType, RegistrationStatusEnumType

from processor.state import (
    ConnectorStatus,
    StateChange,
    TransactionStarted,
    last_transaction_id,
    transaction_for,
)
from processor.validation import OcppVersion, check_request, known_subprotocol, version_of

MAX_MESSAGE_ID_LENGTH = 36
DEFAULT_HEARTBEAT_INTERVAL = 10


class Kind(StrEnum):
    CALL = "call"
    # Never answered: a CALLRESULT, CALLERROR or (OCPP 2.1) CALLRESULTERROR from the CP, or a
    # SEND (OCPP 2.1; its `action` is set).
    RESPONSE = "response"
    INVALID = "invalid"


@dataclass(frozen=True)
class AnswerConfig:
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL


@dataclass(frozen=True)
class Inbound:
    """One frame from a CP, with what the gateway told about it."""

    cp_id: str
    frame: str | bytes
    received_at: datetime
    subprotocol: str | None = None


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    subprotocol: str
    reply: str | None = None
    change: StateChange = field(default_factory=StateChange)
    message_id: str | None = None
    action: str | None = None
    error_code: str | None = None  # of the CALLERROR sent, or received from the CP
    detail: str | None = None  # why a frame is invalid, or a CALLERROR's description


@dataclass(frozen=True)
class Unanswered21:
    """An OCPP 2.1 CALLRESULTERROR `[5, id, code, description, details]` or SEND `[6, id, action,
    payload]`: the `ocpp` library's `unpack` knows neither."""

    unique_id: str
    action: str | None = None
    error_code: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Request:
    message_id: str
    action: str
    payload: dict[str, Any]
    now: str
    state: Mapping[str, Any]
    config: AnswerConfig


@dataclass(frozen=True)
class Handled:
    result: Any  # an ocpp.v16/v201 call_result dataclass
    change: StateChange = field(default_factory=StateChange)


Handler = Callable[[Request], Handled]


def format_time(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds (OCPP allows at most 3), e.g. `2024-05-01T10:00:00.000Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def respond(
    inbound: Inbound, state: Mapping[str, Any], config: AnswerConfig | None = None
) -> Outcome:
    """Decide the answer to one frame from a CP and the change to its state."""
    config = config or AnswerConfig()
    subprotocol = known_subprotocol(inbound.subprotocol)
    now = format_time(inbound.received_at)
    message = _unpack(inbound.frame)
    if isinstance(message, str):
        return Outcome(Kind.INVALID, subprotocol, detail=message)
    seen = StateChange(seen_at=now, subprotocol=subprotocol)
    if isinstance(message, Unanswered21):
        return Outcome(
            Kind.RESPONSE,
            subprotocol,
            change=seen,
            message_id=message.unique_id,
            action=message.action,
            error_code=message.error_code,
            detail=message.description,
        )
    if isinstance(message, CallResult):
        return Outcome(Kind.RESPONSE, subprotocol, change=seen, message_id=message.unique_id)
    if isinstance(message, CallError):
        return Outcome(
            Kind.RESPONSE,
            subprotocol,
            change=seen,
            message_id=message.unique_id,
            error_code=str(message.error_code),
            detail=str(message.error_description),
        )
    request = Request(message.unique_id, message.action, message.payload, now, state, config)
    return _answer_call(request, version_of(subprotocol), subprotocol, seen)


def needs_state(inbound: Inbound) -> bool:
    """Whether answering this frame reads the CP's state (so it must be loaded first)."""
    message = _unpack(inbound.frame)
    version = version_of(known_subprotocol(inbound.subprotocol))
    return isinstance(message, Call) and message.action in _STATEFUL.get(version, set())


def _answer_call(
    request: Request, version: OcppVersion, subprotocol: str, seen: StateChange
) -> Outcome:
    def error(code: str, description: str, details: dict[str, Any]) -> Outcome:
        frame = CallError(request.message_id, code, description, details).to_json()
        return Outcome(
            Kind.CALL,
            subprotocol,
            reply=frame,
            change=seen,
            message_id=request.message_id,
            action=request.action,
            error_code=code,
            detail=description,
        )

    handler = _HANDLERS[version].get(request.action)
    if handler is None:
        return error(
            OcppNotImplemented.code,
            f"{request.action} is not handled by this CSMS",
            {"action": request.action},
        )
    problem = check_request(version, request.action, request.payload)
    if problem is not None:
        return error(problem.error_code, problem.description, {"path": problem.path})
    try:
        handled = handler(request)
    except OCPPError as exc:
        return error(exc.code, str(exc.description), dict(exc.details))
    except Exception as exc:  # a bug must still give the CP a CALLERROR, never a CALLRESULT
        return error(
            InternalError.code,
            f"{request.action} could not be handled",
            {"cause": type(exc).__name__},
        )
    payload = snake_to_camel_case(remove_nones(serialize_as_dict(handled.result)))
    change = replace(handled.change, seen_at=seen.seen_at, subprotocol=seen.subprotocol)
    return Outcome(
        Kind.CALL,
        subprotocol,
        reply=CallResult(request.message_id, payload).to_json(),
        change=change,
        message_id=request.message_id,
        action=request.action,
    )


def _unpack(frame: str | bytes) -> Call | CallResult | CallError | Unanswered21 | str:
    """The OCPP-J message in `frame`, or why it is not one."""
    if isinstance(frame, bytes):
        try:
            frame = frame.decode()
        except UnicodeDecodeError:
            return "the frame is not UTF-8 text"
    unanswered = _unpack_21(frame)
    if unanswered is not None:
        return unanswered
    try:
        message = unpack(frame)
    except OCPPError as exc:
        return f"not an OCPP-J message: {exc.details.get('cause', exc.description)}"
    except (IndexError, KeyError, TypeError, ValueError):
        return "not an OCPP-J message"
    unique_id = message.unique_id
    if not isinstance(unique_id, str) or not 0 < len(unique_id) <= MAX_MESSAGE_ID_LENGTH:
        return f"the message id must be a string of 1 to {MAX_MESSAGE_ID_LENGTH} characters"
    if isinstance(message, Call):
        if not isinstance(message.action, str) or not message.action:
            return "the action of a CALL must be a non-empty string"
        if not isinstance(message.payload, dict):
            return "the payload of a CALL must be a JSON object"
    elif isinstance(message, CallResult):
        if not isinstance(message.payload, dict):
            return "the payload of a CALLRESULT must be a JSON object"
    elif not isinstance(message.error_code, str) or not isinstance(message.error_description, str):
        return "a CALLERROR needs a string error code and description"
    return message


def _unpack_21(frame: str) -> Unanswered21 | str | None:
    """A CALLRESULTERROR or SEND (or why it is malformed); None for any other frame."""
    try:
        message = json.loads(frame)
    except ValueError:
        return None  # `unpack` says why
    if not isinstance(message, list) or not message or message[0] not in (5, 6):
        return None
    if type(message[0]) is not int:
        return None
    if len(message) < 2 or not isinstance(message[1], str):
        return "the message id must be a string"
    unique_id = message[1]
    if not 0 < len(unique_id) <= MAX_MESSAGE_ID_LENGTH:
        return f"the message id must be a string of 1 to {MAX_MESSAGE_ID_LENGTH} characters"
    if message[0] == 5:
        if not (
            len(message) == 5
            and isinstance(message[2], str)
            and isinstance(message[3], str)
            and isinstance(message[4], dict)
        ):
            return "a CALLRESULTERROR is [5, id, errorCode, errorDescription, errorDetails]"
        return Unanswered21(unique_id, error_code=message[2], description=message[3])
    if not (
        len(message) == 4
        and isinstance(message[2], str)
        and message[2]
        and isinstance(message[3], dict)
    ):
        return "a SEND is [6, id, action, payload] with a non-empty action and an object"
    return Unanswered21(unique_id, action=message[2])


# -- OCPP 2.0.1 (and 2.0) ------------------------------------------------------------------


def _boot_201(request: Request) -> Handled:
    return Handled(
        v201_result.BootNotification(
            current_time=request.now,
            interval=request.config.heartbeat_interval,
            status=RegistrationStatusEnumType.accepted,
        ),
        StateChange(boot=request.payload),
    )


def _heartbeat_201(request: Request) -> Handled:
    return Handled(
        v201_result.Heartbeat(current_time=request.now), StateChange(heartbeat_at=request.now)
    )


def _status_201(request: Request) -> Handled:
    payload = request.payload
    status = ConnectorStatus(payload["connectorStatus"], payload["timestamp"])
    key = f"{payload['evseId']}/{payload['connectorId']}"
    return Handled(v201_result.StatusNotification(), StateChange(connector=(key, status)))


def _meter_values_201(request: Request) -> Handled:
    return Handled(v201_result.MeterValues())


def _accepted_token() -> v201_types.IdTokenInfoType:
    return v201_types.IdTokenInfoType(status=AuthorizationStatusEnumType.accepted)


def _transaction_event_201(request: Request) -> Handled:
    token_info = _accepted_token() if "idToken" in request.payload else None
    return Handled(v201_result.TransactionEvent(id_token_info=token_info))


def _authorize_201(request: Request) -> Handled:
    return Handled(v201_result.Authorize(id_token_info=_accepted_token()))


# -- OCPP 1.6 ------------------------------------------------------------------------------


def _boot_16(request: Request) -> Handled:
    return Handled(
        v16_result.BootNotification(
            current_time=request.now,
            interval=request.config.heartbeat_interval,
            status=RegistrationStatus.accepted,
        ),
        StateChange(boot=request.payload),
    )


def _heartbeat_16(request: Request) -> Handled:
    return Handled(
        v16_result.Heartbeat(current_time=request.now), StateChange(heartbeat_at=request.now)
    )


def _status_16(request: Request) -> Handled:
    payload = request.payload
    status = ConnectorStatus(
        payload["status"], payload.get("timestamp", request.now), payload["errorCode"]
    )
    return Handled(
        v16_result.StatusNotification(),
        StateChange(connector=(str(payload["connectorId"]), status)),
    )


def _meter_values_16(request: Request) -> Handled:
    return Handled(v16_result.MeterValues())


def _accepted_tag() -> v16_types.IdTagInfo:
    return v16_types.IdTagInfo(status=AuthorizationStatus.accepted)


def _authorize_16(request: Request) -> Handled:
    return Handled(v16_result.Authorize(id_tag_info=_accepted_tag()))


def _start_transaction_16(request: Request) -> Handled:
    # A repeated call (same message id and payload, e.g. redelivered) gets the same id back.
    key = call_fingerprint(request.message_id, request.payload)
    transaction_id = transaction_for(request.state, key)
    if transaction_id is not None:
        return Handled(v16_result.StartTransaction(transaction_id, _accepted_tag()))
    transaction_id = last_transaction_id(request.state) + 1
    return Handled(
        v16_result.StartTransaction(transaction_id, _accepted_tag()),
        StateChange(transaction=TransactionStarted(key, transaction_id)),
    )


def _stop_transaction_16(request: Request) -> Handled:
    tag_info = _accepted_tag() if "idTag" in request.payload else None
    return Handled(v16_result.StopTransaction(id_tag_info=tag_info))


def call_fingerprint(message_id: str, payload: Mapping[str, Any]) -> str:
    """Identifies one CALL: the same id with another payload (a CP restarting its ids) differs."""
    canonical = json.dumps([message_id, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_HANDLERS_201: dict[str, Handler] = {
    "BootNotification": _boot_201,
    "Heartbeat": _heartbeat_201,
    "StatusNotification": _status_201,
    "MeterValues": _meter_values_201,
    "TransactionEvent": _transaction_event_201,
    "Authorize": _authorize_201,
}

_HANDLERS: dict[OcppVersion, dict[str, Handler]] = {
    OcppVersion.V201: _HANDLERS_201,
    # OCPP 2.1 keeps these messages' 2.0.1 fields and only adds optional ones, so the 2.0.1
    # answers are valid 2.1 answers (the tests check them against the 2.1 schemas); requests
    # are checked against the 2.1 schemas.
    OcppVersion.V21: _HANDLERS_201,
    OcppVersion.V16: {
        "BootNotification": _boot_16,
        "Heartbeat": _heartbeat_16,
        "StatusNotification": _status_16,
        "MeterValues": _meter_values_16,
        "Authorize": _authorize_16,
        "StartTransaction": _start_transaction_16,
        "StopTransaction": _stop_transaction_16,
    },
}

# Actions whose answer depends on the CP's recorded state.
_STATEFUL: dict[OcppVersion, set[str]] = {OcppVersion.V16: {"StartTransaction"}}


def handled_actions(version: OcppVersion) -> list[str]:
    return sorted(_HANDLERS[version])
