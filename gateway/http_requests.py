"""Requests that are not HTTP/1.1 enough for websockets to read get a 400 that says why.

websockets' HTTP parser gives up on a request line with non-ASCII bytes, a protocol other than
HTTP/1.0 or HTTP/1.1, a header line without a colon, or bare LF line ends, before
`process_request` runs: it half-closes the socket without a response or a log line, and the
client cannot tell what it did wrong. `AnsweringServerConnection` (passed to `serve` as
`create_connection`) writes a 400 with the reason first. A client that hung up before sending a
whole request gets nothing: there is no one left to read it.
"""

from __future__ import annotations

from http import HTTPStatus

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidMessage

log = structlog.get_logger(__name__)

# websockets' words for each parse failure (http11.py, 15 to 17) -> what the client reads.
_VALUE_ERRORS = {
    "invalid HTTP request line": "the request line must be `GET <path> HTTP/1.1`",
    "unsupported protocol": "WebSocket connections are opened with HTTP/1.1",
    "invalid HTTP header line": "every header line must be `Name: value`",
    "invalid HTTP header name": "a header name has characters HTTP does not allow",
    "invalid HTTP header value": "a header value has control characters",
    "unsupported request body": "the opening handshake has no request body",
}
_NOT_HTTP = "not an HTTP/1.1 request"


def unparsable_request_reason(error: BaseException) -> str | None:
    """Why a request websockets could not parse is refused, or None when the client left.

    `error` is the parse failure (the cause of websockets' `InvalidMessage`).
    """
    if isinstance(error, UnicodeDecodeError):
        return "the request line must be ASCII: percent-encode the path (RFC 3986)"
    if isinstance(error, NotImplementedError):
        return "the opening handshake has no request body"
    if isinstance(error, EOFError):
        causes = _chain(error)
        if any(str(cause) == "line without CRLF" for cause in causes):
            return "HTTP lines end with CRLF"
        return None  # the client closed the connection before its request was whole
    if isinstance(error, ValueError):
        for prefix, reason in _VALUE_ERRORS.items():
            if str(error).startswith(prefix):
                return reason
    return _NOT_HTTP


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


class AnsweringServerConnection(ServerConnection):
    """A `ServerConnection` that answers requests websockets could not parse with a 400."""

    _unparsable_answered = False

    def send_data(self) -> None:
        # A failed parse leaves only an end-of-stream to send: write the response before it.
        # Once the request is read (every frame of an open connection) this is one test.
        if self.request is None and not self._unparsable_answered:
            self._answer_unparsable_request()
        super().send_data()

    def _answer_unparsable_request(self) -> None:
        failure = self.protocol.handshake_exc
        if not isinstance(failure, InvalidMessage) or failure.__cause__ is None:
            return
        self._unparsable_answered = True
        cause = failure.__cause__
        reason = unparsable_request_reason(cause)
        if reason is None:
            log.debug("http.incomplete_request", error=str(cause), peer=self.remote_address)
            return
        status = HTTPStatus.BAD_REQUEST
        log.debug(
            "http.refused",
            status=status.value,
            reason=reason,
            error=str(cause),
            peer=self.remote_address,
        )
        self.transport.write(self.protocol.reject(status, reason + "\n").serialize())
