"""Dialling the CSMS: the charge point's URL, its credentials, TLS, and what a failure means.

Shared by the single charge point and the fleet; everything here but `client_ssl_context`
is pure.
"""

from __future__ import annotations

import base64
import errno
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote, urlsplit

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

SUBPROTOCOLS = {"2.1": "ocpp2.1", "2.0.1": "ocpp2.0.1", "1.6": "ocpp1.6"}

# Characters of OCPP's identifierString that may stay as they are in a URL path.
_PATH_SAFE = "*-_=@."


class DialSettingsError(ValueError):
    """The command line asks for something that cannot be dialled (bad URL, TLS files)."""


def station_url(base_url: str, cp_id: str) -> str:
    """`ws://host:8080` + `CP1` -> `ws://host:8080/CP1` [OCPP-J 3.1.1: the id is the last
    path segment, percent-encoded]."""
    parts = urlsplit(base_url)
    if parts.scheme not in {"ws", "wss"} or not parts.netloc:
        raise DialSettingsError(
            f"--url must look like ws://host:port or wss://host:port[/path], not {base_url!r}"
        )
    if parts.query or parts.fragment:
        raise DialSettingsError(f"--url must not carry a query or fragment: {base_url!r}")
    if not cp_id:
        raise DialSettingsError("the charge point id must not be empty")
    return f"{base_url.rstrip('/')}/{quote(cp_id, safe=_PATH_SAFE)}"


def basic_auth_header(user: str, password: str) -> str:
    """HTTP Basic credentials (OCPP security profiles 1 and 2: the user is the cpId)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


@dataclass(frozen=True)
class TlsFiles:
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def any(self) -> bool:
        return any((self.ca_file, self.client_cert, self.client_key))


def client_ssl_context(url: str, files: TlsFiles) -> ssl.SSLContext | None:
    """The TLS context for a wss:// URL (None for ws://, which refuses TLS options)."""
    scheme = urlsplit(url).scheme
    if scheme == "ws":
        if files.any:
            raise DialSettingsError("--ca-file, --client-cert and --client-key need a wss:// URL")
        return None
    if files.client_key and not files.client_cert:
        raise DialSettingsError("--client-key needs --client-cert")
    try:
        context = ssl.create_default_context(cafile=files.ca_file)
        if files.client_cert:
            context.load_cert_chain(files.client_cert, files.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise DialSettingsError(f"cannot load the TLS files: {exc}") from exc
    return context


def describe_dial_error(exc: BaseException, url: str, open_timeout: float | None) -> str:
    """One line telling the user why the connection could not be opened."""
    if isinstance(exc, InvalidStatus):
        return describe_http_refusal(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS verification of {url} failed: {exc.verify_message} (see --ca-file)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {url} failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"no WebSocket handshake with {url} within {open_timeout} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused (is the gateway running?)"
    if isinstance(exc, OSError):
        return f"cannot connect to {url}: {exc.strerror or exc}"
    if isinstance(exc, InvalidURI):
        return f"invalid URL {url}: {exc}"
    if isinstance(exc, InvalidHandshake):
        return f"WebSocket handshake with {url} failed: {exc}"
    return f"cannot connect to {url}: {type(exc).__name__}: {exc}"


_HTTP_HINTS = {
    401: "check --password (the user name is the charge point id)",
    403: "the gateway does not accept this charge point's credentials",
    404: "check the URL path, and that the charge point is registered",
    503: "the gateway is not ready or at capacity; try again later",
}


def describe_http_refusal(exc: InvalidStatus) -> str:
    """`server rejected WebSocket connection: HTTP 400 (Bad Request): <body>; <hint>`."""
    response = exc.response
    status = response.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = response.reason_phrase
    line = f"{exc} ({phrase})"
    body = response.body.decode("utf-8", "replace").strip() if response.body else ""
    if body:
        line += f": {body.splitlines()[0][:200]}"
    hint = _HTTP_HINTS.get(status)
    if status == 401 and "WWW-Authenticate" not in response.headers:
        hint = "check --client-cert (a certificate whose CN is the charge point id)"
    if hint:
        line += f"; {hint}"
    return line


def dial_error_cause(exc: BaseException) -> str:
    """A short, stable bucket name for the fleet's error counts."""
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        return close_cause(exc)
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return "too_many_open_files"
        if exc.errno == errno.EADDRNOTAVAIL:
            return "no_free_local_port"
        return f"os_{errno.errorcode.get(exc.errno or 0, exc.errno)}"
    if isinstance(exc, InvalidHandshake):
        return "handshake"
    return type(exc).__name__


MAX_RETRY_AFTER = 3600.0


def retry_after(exc: BaseException) -> float | None:
    """The seconds a refusal's `Retry-After` header asks to wait (503 or 429), else None.

    Only the delay-seconds form is read (what gateways send); an HTTP date or garbage is
    ignored, and the value is capped at an hour so that a bad header cannot park a station.
    """
    if not isinstance(exc, InvalidStatus) or exc.response.status_code not in (429, 503):
        return None
    value = exc.response.headers.get("Retry-After", "").strip()
    if not value.isdigit():
        return None
    return min(float(value), MAX_RETRY_AFTER)


def close_cause(exc: ConnectionClosed) -> str:
    """`close_1008` when the peer sent a close frame, `close_1006` when the TCP link just died."""
    if exc.rcvd is not None:
        return f"close_{exc.rcvd.code}"
    return "close_1006"
