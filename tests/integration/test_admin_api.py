"""The connected-CP API over real HTTP, against an in-process gateway with real CPs connected."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.server import Gateway
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.json: Any = json.loads(body) if body else None


def _request(port: int, method: str, path: str, token: str | None, body: Any) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


async def call(
    gateway: Gateway, method: str, path: str, token: str | None = TOKEN, body: Any = None
) -> Answer:
    assert gateway.admin is not None
    return await asyncio.to_thread(_request, gateway.admin.port, method, path, token, body)


@pytest.fixture
async def gateway(broker: MosquittoProcess) -> AsyncIterator[Gateway]:
    async with running_gateway(
        broker.url, admin_token=TOKEN, admin_port=0, gateway_id="gw-a",
        registry_ids=["CP1", "CP2", "CP*3", "CP|4"],
    ) as running:  # fmt: skip
        yield running


async def open_cp(gateway: Gateway, cp_id: str, subprotocol: str = "ocpp2.0.1") -> ClientConnection:
    ws = await connect(ws_url(gateway, quote(cp_id, safe="")), subprotocols=[subprotocol])
    await ws.send('[2,"boot","Heartbeat",{}]')  # once bridged, the session is in the table
    for _ in range(100):
        if gateway.sessions.get(cp_id) is not None:
            break
        await asyncio.sleep(0.02)
    return ws


async def test_off_without_a_token(broker: MosquittoProcess) -> None:
    async with running_gateway(broker.url) as gateway:
        assert gateway.admin is None
        answer = await asyncio.to_thread(_request, gateway.port, "GET", "/cps", TOKEN, None)
        assert answer.status == 404
        assert "GATEWAY_ADMIN_PORT" in answer.json["error"]


async def test_lists_the_connected_cps_in_id_order(gateway: Gateway) -> None:
    second = await open_cp(gateway, "CP2", "ocpp1.6")
    first = await open_cp(gateway, "CP1", "ocpp2.1")
    answer = await call(gateway, "GET", "/cps")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json["gateway"] == "gw-a"
    assert answer.json["total"] == 2 and answer.json["next"] is None
    entries = answer.json["cps"]
    assert [(e["id"], e["subprotocol"]) for e in entries] == [
        ("CP1", "ocpp2.1"),
        ("CP2", "ocpp1.6"),
    ]
    assert entries[0]["connection"] == gateway.sessions.get("CP1").connection_number  # type: ignore[union-attr]
    host, port = first.local_address[:2]
    assert entries[0]["remote"] == f"{host}:{port}"
    assert set(entries[0]) == {
        "id", "connection", "subprotocol", "remote", "connected_since", "frames_in", "bytes_in",
        "frames_out", "bytes_out", "last_frame_at",
    }  # fmt: skip
    await first.close()
    await second.close()


async def test_pages_with_limit_and_after(gateway: Gateway) -> None:
    sockets = [await open_cp(gateway, cp_id) for cp_id in ("CP2", "CP*3", "CP1")]
    first = await call(gateway, "GET", "/cps?limit=2")
    assert [e["id"] for e in first.json["cps"]] == ["CP*3", "CP1"]
    assert first.json["next"] == "CP1" and first.json["total"] == 3
    second = await call(gateway, "GET", f"/cps?limit=2&after={first.json['next']}")
    assert [e["id"] for e in second.json["cps"]] == ["CP2"] and second.json["next"] is None
    for bad in ("/cps?limit=0", "/cps?limit=x", "/cps?limit=5001", "/cps?order=id"):
        answer = await call(gateway, "GET", bad)
        assert answer.status == 400, bad
        assert answer.json["error"]
    for ws in sockets:
        await ws.close()


async def test_shows_one_cp_with_a_percent_encoded_id(gateway: Gateway) -> None:
    ws = await open_cp(gateway, "CP|4")
    answer = await call(gateway, "GET", "/cps/CP%7C4")
    assert answer.status == 200
    assert answer.json["id"] == "CP|4" and answer.json["gateway"] == "gw-a"
    missing = await call(gateway, "GET", "/cps/CP2")
    assert missing.status == 404
    assert "not connected to this gateway (gw-a)" in missing.json["error"]
    await ws.close()


async def test_frame_counters_once_the_session_records_them(gateway: Gateway) -> None:
    ws = await open_cp(gateway, "CP1")
    session = gateway.sessions.get("CP1")
    if getattr(session, "stats", None) is None:
        await ws.close()
        pytest.skip("gateway/session.py does not record CpStats yet (see gateway/cp_stats.py)")
    await ws.send('[2,"h2","Heartbeat",{}]')
    entry: dict[str, Any] = {}
    for _ in range(100):
        entry = (await call(gateway, "GET", "/cps/CP1")).json
        if entry["frames_in"] == 2:
            break
        await asyncio.sleep(0.02)
    assert entry["frames_in"] == 2
    assert entry["bytes_in"] == len('[2,"boot","Heartbeat",{}]') + len('[2,"h2","Heartbeat",{}]')
    assert entry["connected_since"].endswith("Z") and entry["last_frame_at"].endswith("Z")
    await ws.close()


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", TOKEN + "x"])
async def test_a_missing_or_wrong_token_gets_401_with_a_bearer_challenge(
    gateway: Gateway, token: str | None
) -> None:
    ws = await open_cp(gateway, "CP1")
    for method, path in (
        ("GET", "/cps"),
        ("GET", "/cps/CP1"),
        ("DELETE", "/cps/CP1"),
        ("GET", "/x"),
    ):
        answer = await call(gateway, method, path, token)
        assert answer.status == 401, (method, path)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert gateway.sessions.get("CP1") is not None  # nothing was closed
    await ws.close()


async def test_disconnect_with_code_and_reason_from_a_json_body(gateway: Gateway) -> None:
    ws = await open_cp(gateway, "CP1")
    answer = await call(
        gateway, "DELETE", "/cps/CP1", body={"code": 4000, "reason": "firmware update ⚡"}
    )
    assert answer.status == 200
    assert answer.json["closed"] == "CP1"
    assert (answer.json["code"], answer.json["reason"]) == (4000, "firmware update ⚡")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "firmware update ⚡")
    for _ in range(100):  # the session leaves the table once its teardown is done
        if gateway.sessions.get("CP1") is None:
            break
        await asyncio.sleep(0.02)
    assert (await call(gateway, "GET", "/cps/CP1")).status == 404


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/cps/CP1", 1000, "closed by operator"),
        ("/cps/CP1?code=1001&reason=going%20away", 1001, "going away"),
        ("/cps/CP1?code=1012", 1012, "closed by operator"),
    ],
)
async def test_disconnect_with_the_query_or_the_defaults(
    gateway: Gateway, path: str, code: int, reason: str
) -> None:
    ws = await open_cp(gateway, "CP1")
    assert (await call(gateway, "DELETE", path)).status == 200
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)


@pytest.mark.parametrize(
    "body",
    [{"code": 1005}, {"code": 1006}, {"code": 2000}, {"code": 5000}, {"reason": "x" * 124}],
)
async def test_a_bad_close_is_refused_and_the_cp_stays(gateway: Gateway, body: Any) -> None:
    ws = await open_cp(gateway, "CP1")
    answer = await call(gateway, "DELETE", "/cps/CP1", body=body)
    assert answer.status == 400
    assert answer.json["error"]
    await ws.send('[2,"still","Heartbeat",{}]')  # still connected
    assert gateway.sessions.get("CP1") is not None
    await ws.close()


async def test_unknown_cp_routes_and_methods(gateway: Gateway) -> None:
    assert (await call(gateway, "DELETE", "/cps/CP2")).status == 404
    assert (await call(gateway, "GET", "/health")).status == 404
    assert (await call(gateway, "GET", "/cps/a/b")).status == 404
    not_allowed = await call(gateway, "POST", "/cps/CP1", body={})
    assert not_allowed.status == 405 and not_allowed.headers["Allow"] == "GET, DELETE"
    assert (await call(gateway, "PUT", "/cps", body={})).status == 405


async def test_malformed_http_gets_400(gateway: Gateway) -> None:
    assert gateway.admin is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.admin.port)
    writer.write(b"GARBAGE\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    big = await asyncio.to_thread(
        _request, gateway.admin.port, "DELETE", "/cps/CP1", TOKEN, {"reason": "x" * 5000}
    )
    assert big.status == 413


async def test_the_token_never_appears_in_logs(gateway: Gateway) -> None:
    ws = await open_cp(gateway, "CP1")
    wrong = "wrong-token-abcdefghijklmnop"
    with structlog.testing.capture_logs() as logs:
        await call(gateway, "GET", "/cps")
        await call(gateway, "GET", "/cps", wrong)
        await call(gateway, "GET", f"/cps?after={TOKEN[:4]}")
        await call(gateway, "DELETE", "/cps/CP1", body={"code": 4001, "reason": "test"})
        await call(gateway, "GET", "/nothing")
    text = repr(logs)
    assert "admin.request" in text and "cp.closed_by_operator" in text
    assert TOKEN not in text and wrong not in text
    await ws.close()


async def test_the_cli_lists_shows_and_disconnects(gateway: Gateway) -> None:
    assert gateway.admin is not None
    url = f"http://127.0.0.1:{gateway.admin.port}"
    sockets = [await open_cp(gateway, cp_id) for cp_id in ("CP1", "CP2", "CP*3")]

    async def cli(*arguments: str, token: str | None = TOKEN) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if k != "GATEWAY_ADMIN_TOKEN"}
        if token is not None:
            env["GATEWAY_ADMIN_TOKEN"] = token
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.admin.cli", "--url", url, *arguments, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, _ = await cli("list", "--page-size", "2")  # pages through every CP
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["id", "connection"]
    assert [line.split("  ")[0] for line in lines[1:4]] == ["CP*3", "CP1", "CP2"]
    assert lines[-1] == "3 connected"
    code, out, _ = await cli("list", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [
        "CP*3",
        "CP1",
        "CP2",
    ]
    code, out, _ = await cli("show", "CP*3")
    assert code == 0 and json.loads(out)["id"] == "CP*3"
    code, out, _ = await cli("disconnect", "CP2", "--code", "4002", "--reason", "maintenance")
    assert code == 0 and "closed CP2" in out and "4002" in out
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(sockets[1].recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002
    code, _, err = await cli("disconnect", "CP1", "--code", "1005")
    assert code == 1 and "HTTP 400" in err and "1005" in err
    code, _, err = await cli("show", "CP2")
    assert code == 1 and "HTTP 404" in err
    code, _, err = await cli("list", token="wrong-token-0123456789")
    assert code == 1 and "HTTP 401" in err
    code, _, err = await cli("list", token=None)
    assert code == 2 and "GATEWAY_ADMIN_TOKEN" in err
    for ws in sockets:
        await ws.close()
