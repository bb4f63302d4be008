"""What a charge point sees when it opens a connection: HTTP statuses and close codes."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.server import Gateway
from tests.support.gateway import REPO_ROOT, running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TROUBLESHOOTING = REPO_ROOT / "docs" / "troubleshooting.md"


async def closed_with(
    url: str, subprotocols: list[str] | None
) -> tuple[int | None, str | None, str | None]:
    """Connect, wait for the server's close, return (code, reason, negotiated subprotocol)."""
    async with connect(url, subprotocols=subprotocols) as ws:
        negotiated = ws.subprotocol
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason, negotiated


@pytest.mark.parametrize(
    "path",
    ["/CP+1", "/CP%231", "/CP%2F1", "/CP%201", "/CP:1", "/", "/" + "A" * 49, "/CP1/extra", "/CP1/"],
)
async def test_invalid_ids_get_http_400_and_never_reach_mqtt(
    gateway: Gateway, csms: MqttPeer, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{gateway.port}{path}", subprotocols=["ocpp2.0.1"]):
            pass
    assert refused.value.response.status_code == 400
    assert refused.value.response.body
    assert csms.received.empty()


async def test_percent_encoded_id_is_decoded(gateway: Gateway, csms: MqttPeer) -> None:
    async with connect(ws_url(gateway, "CP%2D1"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        received = await csms.next()
    assert received.topic == "CP-1/in"


async def test_path_prefix(broker: MosquittoProcess, csms: MqttPeer) -> None:
    async with running_gateway(broker.url, path_prefix="/ocpp") as gw:
        async with connect(ws_url(gw, "CP1"), subprotocols=["ocpp2.0.1"]) as ws:
            await ws.send('[2,"1","Heartbeat",{}]')
            assert (await csms.next()).topic == "CP1/in"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{gw.port}/CP1", subprotocols=["ocpp2.0.1"]):
                pass
        assert refused.value.response.status_code == 404


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["x", "ocpp2.0"], "ocpp2.0"),
    ],
)
async def test_subprotocol_in_the_clients_order(
    gateway: Gateway, csms: MqttPeer, offered: list[str], selected: str
) -> None:
    async with connect(ws_url(gateway), subprotocols=offered) as ws:
        assert ws.subprotocol == selected
        await ws.send('[2,"1","Heartbeat",{}]')
        received = await csms.next()
    assert received.user_properties == {"subprotocol": selected}


@pytest.mark.parametrize("offered", [None, ["ocpp9.9"]])
async def test_no_supported_subprotocol_closes_1002(
    gateway: Gateway, offered: list[str] | None
) -> None:
    code, reason, negotiated = await closed_with(ws_url(gateway), offered)
    assert negotiated is None  # handshake completed without Sec-WebSocket-Protocol
    assert code == 1002
    supported = "ocpp2.1, ocpp2.0.1, ocpp2.0, ocpp1.6"
    assert reason == f"no supported OCPP subprotocol offered; supported: {supported}"
    # What the troubleshooting guide shows a charge point's owner is what the gateway sends.
    assert f"close **1002** `{reason}`" in TROUBLESHOOTING.read_text(encoding="utf-8")


async def test_configured_protocols(broker: MosquittoProcess) -> None:
    async with running_gateway(broker.url, protocols=["ocpp1.6"]) as gw:
        code, _, _ = await closed_with(ws_url(gw), ["ocpp2.0.1"])
        assert code == 1002
        async with connect(ws_url(gw), subprotocols=["ocpp2.0.1", "ocpp1.6"]) as ws:
            assert ws.subprotocol == "ocpp1.6"


async def test_unknown_id_closes_1008_with_the_documented_reason(gateway: Gateway) -> None:
    code, reason, negotiated = await closed_with(ws_url(gateway, "CPX"), ["ocpp2.0.1"])
    assert negotiated == "ocpp2.0.1"
    assert (code, reason) == (1008, "Charge Point CPX not registered as an IoT Thing")


async def test_unknown_id_gets_404_when_configured(broker: MosquittoProcess) -> None:
    async with running_gateway(broker.url, unknown_id_response="http-404") as gw:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(gw, "CPX"), subprotocols=["ocpp2.0.1"]):
                pass
        assert refused.value.response.status_code == 404
        assert b"Charge Point CPX not registered as an IoT Thing" in refused.value.response.body
        async with connect(ws_url(gw, "CP1"), subprotocols=["ocpp2.0.1"]) as ws:
            assert ws.subprotocol == "ocpp2.0.1"


async def test_connection_limit_answers_503(broker: MosquittoProcess) -> None:
    async with running_gateway(broker.url, max_connections=1) as gw:
        async with connect(ws_url(gw, "CP1"), subprotocols=["ocpp2.0.1"]):
            await until(lambda: len(gw.sessions) == 1, what="CP1's session")
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(gw, "CP2"), subprotocols=["ocpp2.0.1"]):
                    pass
            assert refused.value.response.status_code == 503


def http_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


async def test_health_and_metrics_on_the_websocket_port(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.port}"
    status, content_type, body = await asyncio.to_thread(http_get, base + "/health")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["status"] == "ready"
    assert (await asyncio.to_thread(http_get, base + "/health/live"))[0] == 200
    status, content_type, body = await asyncio.to_thread(http_get, base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert b"ocpp_gateway_connections" in body
    assert (await asyncio.to_thread(http_get, base + "/CP1"))[
        0
    ] == 426  # a plain GET on a CP path: upgrade required


UPGRADE_HEADERS = (
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
)


async def raw_request(gateway: Gateway, request: bytes) -> tuple[int, bytes]:
    """Send `request` as it is on a plain socket; the response's status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status = int(head.split(b" ", 2)[1])
        length = [
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ]
        body = await asyncio.wait_for(reader.readexactly(length[0]), 5) if length else b""
        return status, body
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "words"),
    [
        (b"GET /CP\xc3\xa91 HTTP/1.1\r\nHost: gw\r\n\r\n", b"ASCII"),
        (b"GET /CP1 HTTP/2.0\r\nHost: gw\r\n\r\n", b"HTTP/1.1"),
        (b"GET /CP1 HTTP/1.1\r\nHost gw\r\n\r\n", b"`Name: value`"),
        (b"GET /CP1 HTTP/1.1\nHost: gw\n\n", b"CRLF"),
        (b"GET\r\n\r\n", b"GET <path> HTTP/1.1"),
    ],
    ids=["non-ascii-path", "http2", "header-without-colon", "bare-lf", "short-request-line"],
)
async def test_requests_websockets_cannot_parse_get_400_with_a_reason(
    gateway: Gateway, request_bytes: bytes, words: bytes
) -> None:
    with capture_logs() as logs:
        status, body = await raw_request(gateway, request_bytes)
    assert status == 400
    assert words in body
    refusals = [entry for entry in logs if entry["event"] == "http.refused"]
    assert [(entry["log_level"], entry["status"]) for entry in refusals] == [("debug", 400)]
    assert refusals[0]["reason"].encode() in body


async def test_duplicate_connection_headers_are_read_together(gateway: Gateway) -> None:
    """RFC 9110 5.3: a list header may be split over lines; it is not a server error."""
    status, _ = await raw_request(
        gateway,
        b"GET /CP1 HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n"
        + UPGRADE_HEADERS
        + b"\r\n",
    )
    assert status == 101
    status, body = await raw_request(
        gateway,
        b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nConnection: close\r\n\r\n",
    )
    assert status == 200
    assert json.loads(body)["status"] == "ready"
    status, _ = await raw_request(
        gateway, b"GET /CP1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nConnection: te\r\n\r\n"
    )
    assert status == 426  # no upgrade asked for: a plain GET on a CP path


@pytest.mark.parametrize("path", [b"/.", b"/..", b"/...", b"/%2e%2e", b"/%2E", b"/.%2e"])
async def test_dots_only_ids_get_400(gateway: Gateway, csms: MqttPeer, path: bytes) -> None:
    status, body = await raw_request(
        gateway,
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\n"
        + UPGRADE_HEADERS
        + b"\r\n",
    )
    assert status == 400
    assert b"only of dots" in body
    assert csms.received.empty()
