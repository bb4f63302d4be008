"""What the security checks raise, and how they quote what a client sent."""

from __future__ import annotations

from http import HTTPStatus

from gateway.handshake import HandshakeRefused


class AuthRefused(HandshakeRefused):
    """A charge point that did not prove its identity: HTTP 401 or 403.

    `reason` is the one line the charge point reads; `detail` says more for the logs only (never
    a secret). `challenge` is the `WWW-Authenticate` value of a 401, when there is one to offer
    (HTTP Basic); a 401 for a missing client certificate has none.
    """

    def __init__(
        self,
        status: HTTPStatus,
        reason: str,
        *,
        detail: str,
        challenge: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(status, reason, retry_after=retry_after)
        self.detail = detail
        self.challenge = challenge


class SecurityMisconfigured(Exception):
    """A TLS or password file cannot be used; the message names the setting and the problem."""


def shown(text: str, limit: int) -> str:
    """Quoted, with control characters escaped and a length limit: safe in one line."""
    quoted = repr(text[:limit])
    return quoted if len(text) <= limit else quoted + "..."
