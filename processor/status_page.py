"""The live status page: one static HTML file, a JSON snapshot and a server-sent event stream.

- `GET /`: the page (processor/static/status.html; plain HTML and JavaScript, no build step,
  nothing loaded from elsewhere);
- `GET /api/cps`: every known charge point's row as JSON;
- `GET /events`: `snapshot` (every row) at once, then `cps` (the rows that changed) at most
  every `FLUSH_SECONDS`, so a fleet sending thousands of heartbeats a second costs the page a
  few events a second.

Meant for a developer's machine or a private network: it has no authentication, and binds
127.0.0.1 unless told otherwise (`PROCESSOR_HTTP_HOST`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from importlib import resources

import structlog

from gateway.admin.http import BadRequest, read_request
from processor.fleet_status import FleetStatus

log = structlog.get_logger(__name__)

FLUSH_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
CLIENT_QUEUE = 64  # pending events per page before a stalled page is dropped
READ_TIMEOUT = 10.0


def page_html() -> bytes:
    return resources.files("processor").joinpath("static/status.html").read_bytes()


def sse_event(name: str, data: object) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {text}\n\n".encode()


class StatusPage:
    def __init__(self, status: FleetStatus, host: str, port: int) -> None:
        self._status = status
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._html = page_html()

    @property
    def port(self) -> int:
        assert self._server is not None, "the status page is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self._flusher = asyncio.create_task(self._flush_forever())
        log.info("status_page.listening", url=f"http://{self._host}:{self.port}/")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        for queue in list(self._clients):
            _offer(queue, None, force=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            rows = self._status.changed()
            if rows and self._clients:
                event = sse_event("cps", rows)
                for queue in list(self._clients):
                    if not _offer(queue, event):
                        self._clients.discard(queue)  # a stalled page: it reconnects by itself
                        _offer(queue, None, force=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(read_request(reader), READ_TIMEOUT)
            except (BadRequest, TimeoutError):
                writer.write(_response(HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"))
                return
            path = request.target.partition("?")[0]
            if request.method != "GET":
                writer.write(_response(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"GET only\n"))
            elif path == "/":
                writer.write(_response(HTTPStatus.OK, "text/html; charset=utf-8", self._html))
            elif path == "/api/cps":
                body = json.dumps(self._status.rows(), ensure_ascii=False).encode()
                writer.write(_response(HTTPStatus.OK, "application/json", body))
            elif path == "/events":
                await self._stream(writer)
            else:
                writer.write(_response(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(
            head.encode() + b"retry: 1000\n\n" + sse_event("snapshot", self._status.rows())
        )
        self._clients.add(queue)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    event = b": keep-alive\n\n"
                if event is None:
                    return
                writer.write(event)
                await writer.drain()
        finally:
            self._clients.discard(queue)


def _offer(queue: asyncio.Queue[bytes | None], item: bytes | None, force: bool = False) -> bool:
    if force and queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        return False
    return True


def _response(status: HTTPStatus, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
