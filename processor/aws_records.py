"""Read the frames an AWS IoT rule put on the SQS queue.

Two rule forms are understood (see docs/processor.md):

- recommended, byte-exact and carrying the subprotocol::

    SELECT encode(*, 'base64') AS payload, topic(1) AS chargePointId,
           get_user_property('subprotocol') AS subprotocol FROM '+/in'

  body: `{"payload": "<base64 of the frame>", "chargePointId": "CP1", "subprotocol": "ocpp2.0.1"}`

- the AWS sample's `SELECT * AS message, topic(1) AS chargePointId FROM '+/in'`
  body: `{"message": [2, "id", "Heartbeat", {}], "chargePointId": "CP1"}` (no subprotocol:
  treated as OCPP 2.0.1).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

MAX_CP_ID_LENGTH = 48
TOPIC_RESERVED = set("/+#")


class BadRecord(ValueError):
    """The record cannot be read; retrying will not help (it ends in the dead-letter queue)."""


@dataclass(frozen=True)
class IotMessage:
    cp_id: str
    frame: str | bytes
    subprotocol: str | None


def decode_body(body: object) -> IotMessage:
    """The charge point frame in an SQS message body written by the IoT rule."""
    if not isinstance(body, str):
        raise BadRecord("the SQS record has no text body")
    try:
        data = json.loads(body)
    except ValueError:
        raise BadRecord("the SQS message body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRecord(
            "the SQS message body is not a JSON object: use an IoT rule that wraps the frame, "
            "e.g. SELECT encode(*, 'base64') AS payload, topic(1) AS chargePointId ..."
        )
    return IotMessage(_cp_id(data), _frame(data), _subprotocol(data.get("subprotocol")))


def _cp_id(data: dict[str, object]) -> str:
    cp_id = data.get("chargePointId")
    if not isinstance(cp_id, str) or not 0 < len(cp_id) <= MAX_CP_ID_LENGTH:
        raise BadRecord("the body has no chargePointId (the rule needs topic(1) AS chargePointId)")
    if TOPIC_RESERVED & set(cp_id):
        raise BadRecord(f"the chargePointId {cp_id!r} cannot be used in an MQTT topic")
    return cp_id


def _frame(data: dict[str, object]) -> str | bytes:
    if "payload" in data:
        payload = data["payload"]
        if not isinstance(payload, str):
            raise BadRecord("`payload` must be the base64 text of the frame")
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise BadRecord("`payload` is not valid base64") from None
    if "message" in data:
        message = data["message"]
        if isinstance(message, str):
            return message
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    raise BadRecord("the body has neither `payload` (base64 frame) nor `message` (the frame)")


def _subprotocol(value: object) -> str | None:
    # get_user_property() gives an array when the property may repeat; the first one counts.
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None
