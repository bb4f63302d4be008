"""Dial helpers: the charge point's URL, Basic auth, TLS options, and what failures mean."""

from __future__ import annotations

import base64
import errno
import ssl
from pathlib import Path

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from simulator.dial import (
    DialSettingsError,
    TlsFiles,
    basic_auth_header,
    client_ssl_context,
    close_cause,
    describe_dial_error,
    dial_error_cause,
    retry_after,
    station_url,
)


@pytest.mark.parametrize(
    ("base", "cp_id", "url"),
    [
        ("ws://localhost:8080", "CP1", "ws://localhost:8080/CP1"),
        ("ws://localhost:8080/", "CP1", "ws://localhost:8080/CP1"),
        ("wss://gw.example.com/ocpp", "CP1", "wss://gw.example.com/ocpp/CP1"),
        ("ws://h:1", "a*b-c_d=e@f.g", "ws://h:1/a*b-c_d=e@f.g"),
        ("ws://h:1", "with space", "ws://h:1/with%20space"),
        ("ws://h:1", "a/b#c+d|e", "ws://h:1/a%2Fb%23c%2Bd%7Ce"),
    ],
)
def test_station_url(base: str, cp_id: str, url: str) -> None:
    assert station_url(base, cp_id) == url


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("http://localhost:8080", "must look like ws://"),
        ("localhost:8080", "must look like ws://"),
        ("ws://", "must look like ws://"),
        ("ws://h:1/?x=1", "query or fragment"),
    ],
)
def test_bad_base_urls(base: str, message: str) -> None:
    with pytest.raises(DialSettingsError, match=message):
        station_url(base, "CP1")


def test_empty_id() -> None:
    with pytest.raises(DialSettingsError, match="must not be empty"):
        station_url("ws://h:1", "")


def test_basic_auth_header_user_is_the_cp_id() -> None:
    header = basic_auth_header("CP1", "s3cr:et")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]) == b"CP1:s3cr:et"


def test_tls_options_need_wss() -> None:
    assert client_ssl_context("ws://h:1", TlsFiles()) is None
    with pytest.raises(DialSettingsError, match="need a wss:// URL"):
        client_ssl_context("ws://h:1", TlsFiles(ca_file="ca.pem"))


def test_wss_without_files_uses_the_system_trust() -> None:
    context = client_ssl_context("wss://h:1", TlsFiles())
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_missing_tls_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DialSettingsError, match="cannot load the TLS files"):
        client_ssl_context("wss://h:1", TlsFiles(ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(DialSettingsError, match="--client-key needs --client-cert"):
        client_ssl_context("wss://h:1", TlsFiles(client_key="key.pem"))


def refusal(status: int, body: bytes = b"", headers: Headers | None = None) -> InvalidStatus:
    if headers is None and status == 401:
        headers = Headers({"WWW-Authenticate": 'Basic realm="OCPP"'})
    return InvalidStatus(Response(status, "", headers or Headers(), body))


def test_http_refusals_say_status_body_and_hint() -> None:
    url = "ws://h:1/CP1"
    assert describe_dial_error(refusal(400, b"bad id\nmore"), url, 10) == (
        "server rejected WebSocket connection: HTTP 400 (Bad Request): bad id"
    )
    assert describe_dial_error(refusal(401), url, 10) == (
        "server rejected WebSocket connection: HTTP 401 (Unauthorized); "
        "check --password (the user name is the charge point id)"
    )
    assert "HTTP 503 (Service Unavailable); the gateway is not ready" in describe_dial_error(
        refusal(503), url, 10
    )
    assert "HTTP 404 (Not Found); check the URL path" in describe_dial_error(refusal(404), url, 10)
    assert "HTTP 599" in describe_dial_error(refusal(599), url, 10)
    assert describe_dial_error(refusal(401, headers=Headers()), url, 10).endswith(
        "check --client-cert (a certificate whose CN is the charge point id)"
    )


def test_network_failures_are_described() -> None:
    url = "ws://h:1/CP1"
    assert describe_dial_error(ConnectionRefusedError(), url, 10) == (
        "cannot connect to ws://h:1/CP1: connection refused (is the gateway running?)"
    )
    assert describe_dial_error(TimeoutError(), url, 2.5) == (
        "no WebSocket handshake with ws://h:1/CP1 within 2.5 s"
    )
    unreachable = OSError(errno.EHOSTUNREACH, "No route to host")
    assert describe_dial_error(unreachable, url, 10) == (
        "cannot connect to ws://h:1/CP1: No route to host"
    )
    assert "handshake with ws://h:1/CP1 failed" in describe_dial_error(
        InvalidHandshake("no upgrade"), url, 10
    )


def test_fleet_error_causes() -> None:
    assert dial_error_cause(refusal(400)) == "http_400"
    assert dial_error_cause(TimeoutError()) == "timeout"
    assert dial_error_cause(ConnectionRefusedError()) == "refused"
    assert dial_error_cause(ConnectionResetError()) == "reset"
    assert dial_error_cause(OSError(errno.EMFILE, "Too many open files")) == ("too_many_open_files")
    assert dial_error_cause(OSError(errno.EADDRNOTAVAIL, "x")) == "no_free_local_port"
    assert dial_error_cause(OSError(errno.EHOSTUNREACH, "x")) == "os_EHOSTUNREACH"
    assert dial_error_cause(ssl.SSLError()) == "tls"
    assert dial_error_cause(InvalidHandshake()) == "handshake"
    assert dial_error_cause(ValueError()) == "ValueError"


def test_close_causes() -> None:
    refused = ConnectionClosedError(
        Close(1008, "Charge Point CP2 not registered as an IoT Thing"),
        Close(1008, "Charge Point CP2 not registered as an IoT Thing"),
        True,
    )
    assert close_cause(refused) == "close_1008"
    assert dial_error_cause(refused) == "close_1008"
    assert str(refused) == (
        "received 1008 (policy violation) Charge Point CP2 not registered as an IoT Thing; "
        "then sent 1008 (policy violation) Charge Point CP2 not registered as an IoT Thing"
    )
    assert close_cause(ConnectionClosedError(None, None)) == "close_1006"


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (503, "7", 7.0),
        (429, " 30 ", 30.0),
        (503, "999999", 3600.0),  # capped
        (503, None, None),
        (503, "Wed, 21 Oct 2026 07:28:00 GMT", None),  # the date form is not read
        (503, "-1", None),
        (401, "5", None),  # only refusals that ask to come back later
    ],
)
def test_retry_after_is_read_from_503_and_429(
    status: int, header: str | None, seconds: float | None
) -> None:
    headers = Headers({"Retry-After": header} if header is not None else {})
    assert retry_after(InvalidStatus(Response(status, "", headers, b""))) == seconds
    assert retry_after(TimeoutError()) is None
