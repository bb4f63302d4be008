"""Presence documents: who is connected, retained on `{cp_id}/presence` (`GATEWAY_TOPIC_PRESENCE`).

On connect the gateway publishes `{"connected": true, ...}`; on disconnect `{"connected": false,
..., "code", "reason", "closed_by"}`. A gateway that dies without closing cannot say so itself:

- per-CP link: each CP's MQTT connection carries a will, the same offline document with
  `closed_by: "gateway_lost"`, which the broker publishes when the connection drops unannounced;
- shared link: the gateway's own connection carries a will on `GATEWAY_TOPIC_GATEWAY`
  (`{"gateway", "instance", "online": false}`, retained; `online: true` is published on connect).
  A CP whose presence names a gateway instance that is offline is offline too.

A takeover publishes no offline document: the new connection's online document is the truth, and
an offline one from the old holder could arrive after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class ClosedBy(StrEnum):
    CP = "cp"
    GATEWAY = "gateway"
    TAKEOVER = "takeover"
    SHUTDOWN = "shutdown"
    BROKER_LOSS = "broker_loss"
    GATEWAY_LOST = "gateway_lost"  # only in wills: the gateway went away without closing


@dataclass(frozen=True)
class Connection:
    """What a presence document says about one connection of a CP."""

    cp_id: str
    gateway: str
    instance: str
    connection: int
    subprotocol: str
    remote: str | None
    since: float  # epoch seconds, the handshake


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _fields(connection: Connection) -> dict[str, object]:
    return {
        "cp_id": connection.cp_id,
        "gateway": connection.gateway,
        "instance": connection.instance,
        "connection": connection.connection,
        "subprotocol": connection.subprotocol,
        "remote": connection.remote,
        "since": utc(connection.since),
    }


def online(connection: Connection) -> bytes:
    return json.dumps({"connected": True, **_fields(connection)}).encode()


def offline(
    connection: Connection, at: float, code: int | None, reason: str, closed_by: ClosedBy
) -> bytes:
    return json.dumps(
        {
            "connected": False,
            **_fields(connection),
            "at": utc(at),
            "code": code,
            "reason": reason,
            "closed_by": closed_by.value,
        }
    ).encode()


def will(connection: Connection) -> bytes:
    """The offline document the broker publishes if the gateway vanishes (`at` is unknown)."""
    document = {
        "connected": False,
        **_fields(connection),
        "code": None,
        "reason": "the gateway went away without closing",
        "closed_by": ClosedBy.GATEWAY_LOST.value,
    }
    return json.dumps(document).encode()


def gateway_status(gateway: str, instance: str, online: bool, at: float | None = None) -> bytes:
    document: dict[str, object] = {"gateway": gateway, "instance": instance, "online": online}
    if at is not None:
        document["since" if online else "at"] = utc(at)
    return json.dumps(document).encode()


@dataclass(frozen=True)
class Presence:
    """The documents a channel publishes for its CP: online now, and its will."""

    online: bytes
    will: bytes
