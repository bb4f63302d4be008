"""Every WebSocket close the gateway initiates, with its code and reason, in one place.

Close reasons are limited to 123 bytes by RFC 6455; reasons built from a cpId stay below that
because ids are at most 48 characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from websockets.frames import CloseCode

SERVICE_RESTART = int(CloseCode.SERVICE_RESTART)


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


def replaced_by_newer_connection() -> Close:
    # Empty reason: this is exactly what users of the gateway see today (`code: 1000, reason: ""`).
    return Close(int(CloseCode.NORMAL_CLOSURE), "")


def taken_over_by_other_gateway() -> Close:
    return Close(int(CloseCode.NORMAL_CLOSURE), "")


def no_subprotocol(supported: Sequence[str]) -> Close:
    return Close(
        int(CloseCode.PROTOCOL_ERROR),
        "no supported OCPP subprotocol offered; supported: " + ", ".join(supported),
    )


def not_registered(cp_id: str) -> Close:
    return Close(
        int(CloseCode.POLICY_VIOLATION), f"Charge Point {cp_id} not registered as an IoT Thing"
    )


def registry_unavailable() -> Close:
    return Close(int(CloseCode.TRY_AGAIN_LATER), "charge point registry unavailable; retry later")


def binary_frame() -> Close:
    return Close(
        int(CloseCode.UNSUPPORTED_DATA), "binary frames are not supported; OCPP-J uses text"
    )


def broker_unavailable() -> Close:
    return Close(int(CloseCode.INTERNAL_ERROR), "message broker unavailable; retry later")


def internal_error() -> Close:
    return Close(int(CloseCode.INTERNAL_ERROR), "internal error in the gateway; reconnect")


def cp_not_reading(write_timeout: float) -> Close:
    # The CP's socket accepted nothing for `write_timeout` s: it does not read what it is sent.
    return Close(
        int(CloseCode.POLICY_VIOLATION),
        f"the charge point did not read its messages for {write_timeout:g} s",
    )


def gateway_restarting() -> Close:
    return Close(int(CloseCode.SERVICE_RESTART), "gateway restarting; reconnect")
