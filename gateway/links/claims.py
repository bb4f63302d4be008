"""Which connection holds a charge point across gateway replicas: the newest claim wins.

A claim is published when a CP connects (`{"gateway", "connection", "at"}`, `at` being the
time of its WebSocket handshake) on the CP's claim topic. Claims are ordered by time, then
gateway id, then connection id, so every replica that compares two claims takes the same
decision; clocks of replicas are assumed to agree to well under the time between two
connections of one CP (NTP does).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

from gateway import strict_json
from gateway.links.broker import PROCESS_NONCE

_connection_numbers = itertools.count(1)


def next_connection_id() -> str:
    """Unique per connection of this process, and across restarts of a gateway."""
    return f"{PROCESS_NONCE}.{next(_connection_numbers)}"


@dataclass(frozen=True, order=True)
class Claim:
    """Who holds a charge point; a greater claim is newer and wins."""

    at: float
    gateway: str
    connection: str

    def encode(self) -> bytes:
        return json.dumps(
            {"gateway": self.gateway, "connection": self.connection, "at": self.at}
        ).encode()


def decode_claim(payload: bytes) -> Claim | None:
    try:
        fields = strict_json.decode_bytes(payload)
        claim = Claim(float(fields["at"]), str(fields["gateway"]), str(fields["connection"]))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return claim if math.isfinite(claim.at) else None
