"""A broker that caps subscriptions per client, as AWS IoT Core does: a proxy before Mosquitto.

Mosquitto has no per-connection subscription limit. This TCP proxy reads the MQTT 5 packets a
client sends, keeps the set of topic filters each client's session holds (SUBSCRIBE adds,
UNSUBSCRIBE removes, a CONNECT with clean start empties it), and answers a SUBSCRIBE that would
take the session past `limit` filters itself, with a SUBACK refusing every filter with reason
code 0x97 (Quota exceeded), instead of passing it on. Every other packet passes unchanged, both
ways. `drop(client_id, hold)` cuts that client's TCP connection as a network fault would, and
cuts its reconnections for `hold` seconds.

The parsing part (`PacketReader`, `parse_*`, `suback`) is pure and unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

CONNECT = 1
SUBSCRIBE = 8
UNSUBSCRIBE = 10
QUOTA_EXCEEDED = 0x97
CLEAN_START = 0x02


class MalformedPacket(ValueError):
    """The bytes are not an MQTT 5 packet this proxy can read."""


def decode_varint(data: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    """(value, offset after it) of a variable byte integer; None when more bytes are needed."""
    value = 0
    for position in range(4):
        if offset + position >= len(data):
            return None
        byte = data[offset + position]
        value |= (byte & 0x7F) << (7 * position)
        if not byte & 0x80:
            return value, offset + position + 1
    raise MalformedPacket("a variable byte integer longer than 4 bytes")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class PacketReader:
    """Splits a byte stream into whole packets (fixed header included)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        packets = []
        while len(self._buffer) >= 2:
            length = decode_varint(self._buffer, 1)
            if length is None:
                break
            remaining, start = length
            end = start + remaining
            if len(self._buffer) < end:
                break
            packets.append(bytes(self._buffer[:end]))
            del self._buffer[:end]
        return packets


class _Cursor:
    def __init__(self, packet: bytes) -> None:
        header = decode_varint(packet, 1)
        if header is None:
            raise MalformedPacket("a truncated fixed header")
        self.data = packet
        self.offset = header[1]

    @property
    def left(self) -> int:
        return len(self.data) - self.offset

    def take(self, size: int) -> bytes:
        if self.left < size:
            raise MalformedPacket("a packet shorter than its fields")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def string(self) -> str:
        return self.take(self.u16()).decode()

    def skip_properties(self) -> None:
        decoded = decode_varint(self.data, self.offset)
        if decoded is None:
            raise MalformedPacket("truncated properties")
        length, self.offset = decoded
        self.take(length)


@dataclass(frozen=True)
class Connect:
    client_id: str
    clean_start: bool


def parse_connect(packet: bytes) -> Connect:
    cursor = _Cursor(packet)
    cursor.string()  # "MQTT"
    level = cursor.take(1)[0]
    flags = cursor.take(1)[0]
    cursor.u16()  # keep-alive
    if level == 5:
        cursor.skip_properties()
    return Connect(cursor.string(), bool(flags & CLEAN_START))


def parse_subscribe(packet: bytes) -> tuple[int, list[str]]:
    """(packet id, topic filters) of a SUBSCRIBE."""
    cursor = _Cursor(packet)
    packet_id = cursor.u16()
    cursor.skip_properties()
    filters = []
    while cursor.left:
        filters.append(cursor.string())
        cursor.take(1)  # subscription options
    return packet_id, filters


def parse_unsubscribe(packet: bytes) -> tuple[int, list[str]]:
    """(packet id, topic filters) of an UNSUBSCRIBE."""
    cursor = _Cursor(packet)
    packet_id = cursor.u16()
    cursor.skip_properties()
    filters = []
    while cursor.left:
        filters.append(cursor.string())
    return packet_id, filters


def suback(packet_id: int, reason_codes: list[int]) -> bytes:
    """A SUBACK without properties."""
    body = packet_id.to_bytes(2, "big") + b"\x00" + bytes(reason_codes)
    return bytes([0x90]) + encode_varint(len(body)) + body


@dataclass
class _Pipe:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


@dataclass
class QuotaProxy:
    """Listens on 127.0.0.1; `url` is what clients connect to."""

    upstream_host: str
    upstream_port: int
    limit: int
    refused: int = 0  # topic filters refused
    accepted: int = 0  # topic filters passed on in SUBSCRIBE packets
    sessions: dict[str, set[str]] = field(default_factory=dict)
    _pipes: dict[str, _Pipe] = field(default_factory=dict)
    _held_until: dict[str, float] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        port = self._server.sockets[0].getsockname()[1]
        return f"mqtt://127.0.0.1:{port}"

    def client_ids(self) -> list[str]:
        return list(self._pipes)

    def drop(self, client_id: str, hold: float = 0.0) -> None:
        """Cut the client's TCP connection (and the broker's side) without a DISCONNECT.

        For `hold` seconds, its new connections are cut as soon as they send CONNECT.
        """
        self._held_until[client_id] = time.monotonic() + hold
        self._pipes.pop(client_id).abort()

    async def start(self) -> QuotaProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes.values()):
            pipe.abort()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        pipe = _Pipe(writer, upstream_writer)
        downstream = asyncio.create_task(self._copy_down(upstream_reader, writer))
        try:
            await self._copy_up(reader, pipe)
        except (OSError, MalformedPacket):
            pass
        finally:
            pipe.abort()
            downstream.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await downstream
            for client_id, known in list(self._pipes.items()):
                if known is pipe:
                    del self._pipes[client_id]
            self._tasks.discard(task)

    async def _copy_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Broker to client, whole packets only, so a SUBACK of ours never splits one."""
        packets = PacketReader()
        while data := await reader.read(65536):
            for packet in packets.feed(data):
                writer.write(packet)
            await writer.drain()
        writer.transport.abort()

    async def _copy_up(self, reader: asyncio.StreamReader, pipe: _Pipe) -> None:
        packets = PacketReader()
        session: set[str] = set()
        while data := await reader.read(65536):
            for packet in packets.feed(data):
                kind = packet[0] >> 4
                if kind == CONNECT:
                    connect = parse_connect(packet)
                    if time.monotonic() < self._held_until.get(connect.client_id, 0.0):
                        return
                    if connect.clean_start or connect.client_id not in self.sessions:
                        self.sessions[connect.client_id] = set()
                    session = self.sessions[connect.client_id]
                    self._pipes[connect.client_id] = pipe
                elif kind == SUBSCRIBE:
                    packet_id, filters = parse_subscribe(packet)
                    if len(session.union(filters)) > self.limit:
                        self.refused += len(filters)
                        pipe.client.write(suback(packet_id, [QUOTA_EXCEEDED] * len(filters)))
                        continue
                    session.update(filters)
                    self.accepted += len(filters)
                elif kind == UNSUBSCRIBE:
                    session.difference_update(parse_unsubscribe(packet)[1])
                pipe.upstream.write(packet)
            await pipe.upstream.drain()
