"""A small HTTP/1.1 server for the connected-CP API: one request per connection.

asyncio's streams are enough for a handful of operator requests; a web framework would be a
dependency for four routes. Requests are bounded (head 8 KiB, body 4 KiB, 10 s to arrive);
every answer is JSON and closes the connection. Logs name the method, path and status, never a
header: the token travels in one.
"""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus

import structlog

from gateway.admin.api import AdminApi, AdminRequest, AdminResponse, error

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 8192
MAX_BODY_BYTES = 4096
READ_TIMEOUT = 10.0


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminServer:
    def __init__(self, api: AdminApi, host: str, port: int) -> None:
        self._api = api
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful when configured with port 0)."""
        assert self._server is not None, "the admin API is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_HEAD_BYTES
        )
        log.info("admin.listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target = "-", "-"
        try:
            try:
                request = await asyncio.wait_for(read_request(reader), READ_TIMEOUT)
                method, target = request.method, request.target
                response = await self._api.handle(request)
            except BadRequest as exc:
                response = error(exc.status, str(exc))
            except TimeoutError:
                response = error(HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive in time")
            log.info(
                "admin.request",
                method=method,
                path=target.partition("?")[0],
                status=response.status.value,
                remote=_peer(writer),
            )
            writer.write(render(response))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("admin.failed", method=method, path=target.partition("?")[0])
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> AdminRequest:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "the request head is too large"
        ) from None
    except asyncio.IncompleteReadError as exc:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the request ended early") from exc
    lines = head.decode("latin-1").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request line")
    method, target, _ = request_line
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, separator, value = line.partition(":")
        if not separator or not name.strip():
            raise BadRequest(HTTPStatus.BAD_REQUEST, "a header line has no name")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send the body with Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise BadRequest(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise BadRequest(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is limited to {MAX_BODY_BYTES} bytes"
        )
    body = await reader.readexactly(length) if length else b""
    return AdminRequest(method.upper(), target, headers, body)


def render(response: AdminResponse) -> bytes:
    body = response.encode()
    lines = [
        f"HTTP/1.1 {response.status.value} {response.status.phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _peer(writer: asyncio.StreamWriter) -> str | None:
    address = writer.get_extra_info("peername")
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else None
