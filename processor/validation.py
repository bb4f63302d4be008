"""Check a CALL's payload against the OCPP JSON schemas shipped with the `ocpp` library.

A schema violation becomes the CALLERROR code OCPP-J defines for it, spelled the way the CP's
OCPP version spells it (OCPP 1.6 keeps the typos `FormationViolation` and
`OccurenceConstraintViolation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.messages import MessageType, get_validator

MAX_DESCRIPTION_LENGTH = 255  # OCPP 2.0.1 errorDescription is at most 255 characters


class OcppVersion(StrEnum):
    """The OCPP versions whose schemas are used; OCPP 2.0 uses the 2.0.1 schemas."""

    V16 = "1.6"
    V201 = "2.0.1"
    V21 = "2.1"


SUBPROTOCOL_VERSIONS = {
    "ocpp1.6": OcppVersion.V16,
    "ocpp2.0": OcppVersion.V201,
    "ocpp2.0.1": OcppVersion.V201,
    "ocpp2.1": OcppVersion.V21,
}
DEFAULT_SUBPROTOCOL = "ocpp2.0.1"


def known_subprotocol(subprotocol: str | None) -> str:
    """The subprotocol to answer in: a missing or unknown one is treated as OCPP 2.0.1."""
    return subprotocol if subprotocol in SUBPROTOCOL_VERSIONS else DEFAULT_SUBPROTOCOL


def version_of(subprotocol: str) -> OcppVersion:
    return SUBPROTOCOL_VERSIONS.get(subprotocol, OcppVersion.V201)


class Violation(StrEnum):
    FORMAT = "format"
    OCCURRENCE = "occurrence"
    PROPERTY = "property"
    TYPE = "type"


_CODES_2X = {
    Violation.FORMAT: FormatViolationError.code,
    Violation.OCCURRENCE: OccurrenceConstraintViolationError.code,
    Violation.PROPERTY: PropertyConstraintViolationError.code,
    Violation.TYPE: TypeConstraintViolationError.code,
}
_CODES = {
    OcppVersion.V201: _CODES_2X,
    OcppVersion.V21: _CODES_2X,
    OcppVersion.V16: {
        Violation.FORMAT: FormationViolationError.code,
        Violation.OCCURRENCE: OccurenceConstraintViolationError.code,
        Violation.PROPERTY: PropertyConstraintViolationError.code,
        Violation.TYPE: TypeConstraintViolationError.code,
    },
}

# JSON schema keyword that failed -> kind of OCPP-J violation.
_VIOLATIONS = {
    "required": Violation.OCCURRENCE,
    "minItems": Violation.OCCURRENCE,
    "maxItems": Violation.OCCURRENCE,
    "type": Violation.TYPE,
    "maxLength": Violation.TYPE,  # CiStringNType: the length is part of the type
    "minLength": Violation.TYPE,
    "enum": Violation.PROPERTY,
    "minimum": Violation.PROPERTY,
    "maximum": Violation.PROPERTY,
    "pattern": Violation.PROPERTY,
    "multipleOf": Violation.PROPERTY,
    "format": Violation.PROPERTY,
}

# A missing field is reported before a wrong type, a wrong value, then anything else.
_PRIORITY = [Violation.OCCURRENCE, Violation.TYPE, Violation.PROPERTY, Violation.FORMAT]


@dataclass(frozen=True)
class PayloadError:
    error_code: str
    description: str
    path: str


def check_request(
    version: OcppVersion, action: str, payload: dict[str, Any]
) -> PayloadError | None:
    """None when `payload` is a valid `action` request, else the CALLERROR to send back."""
    return _first_error(version, get_validator(MessageType.Call, action, version.value), payload)


def check_response(
    version: OcppVersion, action: str, payload: dict[str, Any]
) -> PayloadError | None:
    """None when `payload` is a valid answer to `action` (used to test the answers)."""
    validator = get_validator(MessageType.CallResult, action, version.value)
    return _first_error(version, validator, payload)


def _first_error(
    version: OcppVersion, validator: Any, payload: dict[str, Any]
) -> PayloadError | None:
    """The schema violation to report; when there are several, the first in `_PRIORITY` order."""
    errors = sorted(
        validator.iter_errors(payload),
        key=lambda error: (_PRIORITY.index(_violation(error)), list(map(str, error.absolute_path))),
    )
    return _payload_error(version, errors[0]) if errors else None


def _violation(error: Any) -> Violation:
    return _VIOLATIONS.get(str(error.validator), Violation.FORMAT)


def _payload_error(version: OcppVersion, error: Any) -> PayloadError:
    violation = _violation(error)
    path = "/" + "/".join(str(part) for part in error.absolute_path)
    description = error.message if path == "/" else f"{error.message} at {path}"
    if len(description) > MAX_DESCRIPTION_LENGTH:
        description = description[: MAX_DESCRIPTION_LENGTH - 1] + "…"
    return PayloadError(_CODES[version][violation], description, path)
