"""HTTP Basic credentials (profiles 1 and 2): the `Authorization` header and its 401 refusals.

Pure: no I/O. The header and the password are never put in a refusal or a log.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from http import HTTPStatus

from gateway.security.errors import AuthRefused, shown

REALM = "OCPP"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


def _unauthorized(reason: str, detail: str) -> AuthRefused:
    return AuthRefused(HTTPStatus.UNAUTHORIZED, reason, detail=detail, challenge=CHALLENGE)


def basic_password(cp_id: str, authorization: Sequence[str]) -> bytes:
    """The password from the `Authorization` header values, whose user must be `cp_id`.

    Raises `AuthRefused` (401) when the header is missing, repeated, not Basic, malformed, or
    names another user. The password stays bytes: OCPP 1.6 keys are not always text.
    """
    if not authorization:
        raise _unauthorized(
            "HTTP Basic credentials are required (user = charge point id)",
            "no Authorization header",
        )
    if len(authorization) > 1:
        raise _unauthorized(
            "send one Authorization header", f"{len(authorization)} Authorization headers"
        )
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(
            "only HTTP Basic authentication is accepted (user = charge point id)",
            f"scheme {shown(scheme, 20)}",
        )
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _unauthorized(
            "the Authorization header is not valid HTTP Basic credentials", "not base64"
        ) from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise _unauthorized(
            "the Authorization header is not valid HTTP Basic credentials", "no colon"
        )
    if user != cp_id.encode():
        raise _unauthorized(
            f"the HTTP Basic user must be the charge point id {cp_id}",
            # Not the user itself: a client that swapped user and password would log its secret.
            "the user is not the charge point id",
        )
    return password


def wrong_password(cp_id: str, stored: bool) -> AuthRefused:
    """The same answer whether or not `cp_id` has a password, so ids cannot be probed."""
    return _unauthorized(
        f"wrong password for charge point {cp_id}",
        "wrong password" if stored else "no password stored for this charge point",
    )


def too_many_failures(cp_id: str, by: str, retry_after: int) -> AuthRefused:
    """HTTP 429: too many failed password checks for this id (`by="id"`) or from this address
    (`by="address"`); no password is checked until `retry_after` seconds have passed."""
    return AuthRefused(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"too many failed password checks for charge point {cp_id}; retry in {retry_after} s"
        if by == "id"
        else f"too many failed password checks from this address; retry in {retry_after} s",
        detail=f"rate limited by {by}",
        retry_after=retry_after,
    )
