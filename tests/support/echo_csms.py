"""A tiny OCPP-J central system that answers every CALL at once, for tests and benchmarks.

No MQTT, no schema validation: BootNotification gets Accepted with an interval, Heartbeat the
current time, every other action the smallest valid answer. Tests can make it refuse ids (HTTP
status before the upgrade, or a close code after it, as the gateway does), require Basic auth,
serve TLS, see every frame it received and drop a live connection.

As a library::

    async with EchoCsms() as csms:
        ...  # csms.url is ws://127.0.0.1:<port>

As a process (benchmarks)::

    python -m tests.support.echo_csms --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import json
import signal
import ssl
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

SUPPORTED = ("ocpp2.0.1", "ocpp2.0", "ocpp1.6")


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def answer_payload(
    action: str, subprotocol: str | None, heartbeat_interval: int, boot_status: str = "Accepted"
) -> dict[str, Any]:
    """The CALLRESULT payload for `action` (the smallest one the schemas accept)."""
    v16 = subprotocol == "ocpp1.6"
    if action == "BootNotification":
        return {"currentTime": utc_now(), "interval": heartbeat_interval, "status": boot_status}
    if action == "Heartbeat":
        return {"currentTime": utc_now()}
    if action == "Authorize":
        accepted = {"status": "Accepted"}
        return {"idTagInfo": accepted} if v16 else {"idTokenInfo": accepted}
    if action == "StartTransaction":
        return {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    return {}


def answer(
    frame: str, subprotocol: str | None, heartbeat_interval: int, boot_status: str = "Accepted"
) -> str | None:
    """The reply to one frame: a CALLRESULT for a CALL, a CALLERROR for garbage, else nothing."""
    try:
        message = json.loads(frame)
    except ValueError:
        message = None
    if not isinstance(message, list) or len(message) < 3 or not isinstance(message[1], str):
        return json.dumps([4, "-1", "FormatViolation", "not an OCPP-J message", {}])
    if message[0] != 2:
        return None
    payload = answer_payload(str(message[2]), subprotocol, heartbeat_interval, boot_status)
    return json.dumps([3, message[1], payload], separators=(",", ":"))


def cp_id_of(path: str) -> str:
    return unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])


@dataclass
class EchoCsms:
    host: str = "127.0.0.1"
    port: int = 0
    heartbeat_interval: int = 10
    boot_status: str = "Accepted"
    http_status: dict[str, int] = field(default_factory=dict)
    """Ids refused before the upgrade, with this HTTP status."""
    close_on_connect: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Ids whose connection is closed right after the handshake, with this code and reason."""
    passwords: dict[str, str] | None = None
    """When set, HTTP Basic auth is required: cp id -> password (401 otherwise)."""
    ssl_context: ssl.SSLContext | None = None
    record: bool = True
    """Keep every received frame in `frames` (turn off for benchmarks)."""
    ignore_actions: set[str] = field(default_factory=set)
    """CALLs left unanswered (the caller times out)."""
    error_actions: dict[str, str] = field(default_factory=dict)
    """CALLs answered with a CALLERROR of this code."""

    frames: list[tuple[str, Any]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    """Opening handshakes per id, refused ones included."""
    connections: Counter[str] = field(default_factory=Counter)
    live: dict[str, ServerConnection] = field(default_factory=dict)
    peer_certificates: dict[str, Any] = field(default_factory=dict)
    calls_answered: int = 0
    _server: Server | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    def actions(self, cp_id: str) -> list[str]:
        """The actions of the CALLs `cp_id` sent, in order."""
        return [
            frame[2]
            for sender, frame in self.frames
            if sender == cp_id and isinstance(frame, list) and frame[:1] == [2]
        ]

    def calls(self, cp_id: str, action: str) -> list[dict[str, Any]]:
        """The payloads of the `action` CALLs `cp_id` sent."""
        return [
            frame[3]
            for sender, frame in self.frames
            if sender == cp_id
            and isinstance(frame, list)
            and frame[:1] == [2]
            and frame[2] == action
        ]

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            ping_interval=None,
            max_queue=4,
            backlog=4096,
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> EchoCsms:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def drop(self, cp_id: str, code: int = 1012, reason: str = "") -> None:
        """Close `cp_id`'s live connection from the server side."""
        await self.live[cp_id].close(code, reason)

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for protocol in offered:
            if protocol in SUPPORTED:
                return protocol
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        cp_id = cp_id_of(request.path)
        self.requests[cp_id] += 1
        status = self.http_status.get(cp_id)
        if status is not None:
            return connection.respond(HTTPStatus(status), f"refused {cp_id}\n")
        if self.passwords is not None and not self._authorized(cp_id, request):
            refusal = connection.respond(HTTPStatus.UNAUTHORIZED, "bad or missing credentials\n")
            refusal.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
            return refusal
        return None

    def _authorized(self, cp_id: str, request: Request) -> bool:
        assert self.passwords is not None
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{cp_id}:{self.passwords.get(cp_id, '')}".encode())
        return cp_id in self.passwords and hmac.compare_digest(
            header.encode(), b"Basic " + expected
        )

    def _reply(self, text: str, subprotocol: str | None) -> str | None:
        if self.ignore_actions or self.error_actions:
            with contextlib.suppress(ValueError, IndexError, TypeError):
                message = json.loads(text)
                if message[0] == 2 and message[2] in self.ignore_actions:
                    return None
                if message[0] == 2 and message[2] in self.error_actions:
                    code = self.error_actions[message[2]]
                    return json.dumps([4, message[1], code, "refused by the test", {}])
        return answer(text, subprotocol, self.heartbeat_interval, self.boot_status)

    async def _handle(self, connection: ServerConnection) -> None:
        cp_id = cp_id_of(connection.request.path if connection.request else "/")
        self.connections[cp_id] += 1
        if self.ssl_context is not None:
            self.peer_certificates[cp_id] = connection.transport.get_extra_info("peercert")
        if connection.subprotocol is None:
            await connection.close(1002, f"supported subprotocols: {','.join(SUPPORTED)}")
            return
        refusal = self.close_on_connect.get(cp_id)
        if refusal is not None:
            await connection.close(*refusal)
            return
        self.live[cp_id] = connection
        try:
            async for frame in connection:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                if self.record:
                    with contextlib.suppress(ValueError):
                        self.frames.append((cp_id, json.loads(text)))
                reply = self._reply(text, connection.subprotocol)
                if reply is not None:
                    self.calls_answered += 1
                    await connection.send(reply)
        except ConnectionClosed:
            pass
        finally:
            if self.live.get(cp_id) is connection:
                del self.live[cp_id]


async def serve_forever(csms: EchoCsms) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with csms:
        print(f"echo CSMS listening on {csms.url}", flush=True)
        await stop.wait()
    print(
        json.dumps(
            {"connections": sum(csms.connections.values()), "calls_answered": csms.calls_answered}
        ),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.echo_csms",
        description="A central system that answers every OCPP-J CALL at once (tests, benchmarks).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=int, default=10, help="heartbeat interval returned")
    args = parser.parse_args(argv)
    csms = EchoCsms(host=args.host, port=args.port, heartbeat_interval=args.interval, record=False)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_forever(csms))
    else:
        uvloop.run(serve_forever(csms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
