"""Notices to the CSMS about messages the gateway accepted from `<cpId>/out` but could not deliver.

Published (QoS 1, not retained) on `GATEWAY_TOPIC_UNDELIVERED` (default `{cp_id}/undelivered`):
`{"cp_id", "reason", "message", "at"}`, `message` being the OCPP-J frame as it was published. A
CSMS that waits for an answer to a CALL can stop waiting when its message id shows up there.
Messages that were malformed are not echoed back (they are only counted and logged).
"""

from __future__ import annotations

import json

from gateway.presence import utc

# Why a well-formed message did not reach the CP.
UNDELIVERED_REASONS = frozenset({"cp_disconnected", "cp_not_reading", "cp_too_slow"})


def undelivered(cp_id: str, message: bytes, reason: str, at: float) -> bytes:
    return json.dumps(
        {
            "cp_id": cp_id,
            "reason": reason,
            "message": message.decode(errors="replace"),
            "at": utc(at),
        }
    ).encode()
