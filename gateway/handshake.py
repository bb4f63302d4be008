"""Decisions taken during the opening handshake: which charge point, which subprotocol.

Pure functions, no I/O. HTTP refusals raise `HandshakeRefused` with the status to answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import unquote

from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"


class HandshakeRefused(Exception):
    """The request is answered with an HTTP error instead of a WebSocket upgrade.

    `retry_after` (whole seconds) is sent as the `Retry-After` header when set.
    """

    def __init__(self, status: HTTPStatus, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


def cp_id_from_path(path: str, prefix: str = "") -> str:
    """Extract and validate the charge point id: the last path segment after `prefix`.

    `prefix` is empty or starts with `/` and has no trailing `/` (see `Settings.path_prefix`).
    """
    path = path.partition("?")[0]
    expected_start = f"{prefix}/"
    if not path.startswith(expected_start):
        raise HandshakeRefused(
            HTTPStatus.NOT_FOUND,
            f"charge points connect at {expected_start}<chargePointId>",
        )
    segment = path[len(expected_start) :]
    if "/" in segment:
        raise HandshakeRefused(
            HTTPStatus.BAD_REQUEST,
            f"the URL must end with a single charge point id after {expected_start}",
        )
    try:
        cp_id = unquote(segment, errors="strict") if "%" in segment else segment
    except UnicodeDecodeError:
        raise HandshakeRefused(
            HTTPStatus.BAD_REQUEST, "the percent-encoded charge point id is not valid UTF-8"
        ) from None
    if not is_valid_cp_id(cp_id):
        raise HandshakeRefused(HTTPStatus.BAD_REQUEST, describe_invalid_cp_id(cp_id))
    return cp_id


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol in the client's order that the gateway supports, if any."""
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None
