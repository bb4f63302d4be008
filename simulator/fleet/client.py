"""One fleet charge point: a lean OCPP-J client on a bare `websockets` connection.

No schema validation and no per-message objects: CALL frames are formatted from templates, each
answer is matched to its CALL by message id, and requests from the CSMS are answered with a
CALLERROR `NotImplemented`. OCPP-J allows one CALL in flight per direction, so a charge point
is one coroutine: send, read until the answer arrives, wait for the next call's time while still
reading. That keeps the cost per charge point to one task and one connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from simulator.backoff import ReconnectDelays
from simulator.dial import (
    basic_auth_header,
    close_cause,
    dial_error_cause,
    retry_after,
    station_url,
)
from simulator.fleet.options import FleetPlan
from simulator.fleet.stats import FleetStats

BOOT_RETRY_DEFAULT = 10.0
NOT_IMPLEMENTED = "fleet charge points answer no requests"


class CallFailed(Exception):
    """The CSMS answered with a CALLERROR, or not in time."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass
class FleetContext:
    """What every charge point of a run shares."""

    plan: FleetPlan
    stats: FleetStats
    dial_slots: asyncio.Semaphore
    connect_options: dict[str, Any]
    boot_payload: str
    """The BootNotification payload, JSON-encoded once for the whole fleet."""
    uniform: Callable[[float, float], float]
    on_first_error: Callable[[str, str, BaseException], None]


class ChargePoint:
    __slots__ = (
        "boot_accepted",
        "connected_before",
        "cp_id",
        "fleet",
        "interval",
        "next_id",
        "retry_after",
    )

    def __init__(self, cp_id: str, fleet: FleetContext) -> None:
        self.cp_id = cp_id
        self.fleet = fleet
        self.boot_accepted = False
        self.connected_before = False
        self.interval = BOOT_RETRY_DEFAULT
        self.next_id = 0
        self.retry_after: float | None = None
        """Seconds the gateway's last refusal asked to wait (`Retry-After`), if it did."""

    async def run(self) -> None:
        """Connect, converse, and reconnect with the OCPP back-off if asked to."""
        plan = self.fleet.plan
        delays = ReconnectDelays(plan.reconnect, self.fleet.uniform) if plan.reconnect else None
        while True:
            try:
                finished, answered = await self.connect_once()
            except Exception as exc:  # a bug must not pass silently, nor stop the other CPs
                self.fleet.stats.disconnects["internal_error"] += 1
                self.fleet.on_first_error("internal", type(exc).__name__, exc)
                return
            if finished or delays is None:
                return
            if answered:
                delays.reset()
            # The gateway's Retry-After, when it sent one, instead of the back-off.
            delay = delays.next_delay() if self.retry_after is None else self.retry_after
            self.retry_after = None
            await asyncio.sleep(delay)

    async def connect_once(self) -> tuple[bool, bool]:
        """One connection's life: (all calls done, the CSMS answered something)."""
        fleet = self.fleet
        stats = fleet.stats
        stats.dial_started(time.perf_counter())
        connection: ClientConnection | None = None
        answered = False
        try:
            async with fleet.dial_slots:
                started = time.perf_counter()
                connection = await connect(self.url(), **self.dial_options())
                handshake_s = time.perf_counter() - started
            if not self.boot_accepted:
                await self.boot_once(connection)
                answered = True
        except (OSError, TimeoutError, WebSocketException, CallFailed) as exc:
            cause = exc.cause if isinstance(exc, CallFailed) else dial_error_cause(exc)
            self.retry_after = retry_after(exc)
            stats.dial_failed(cause)
            fleet.on_first_error("connect", cause, exc)
            if connection is not None:
                await connection.close()
            return False, answered
        except asyncio.CancelledError:
            stats.dialing -= 1
            if connection is not None:
                await connection.close()
            raise
        stats.dial_succeeded(time.perf_counter(), handshake_s, self.connected_before)
        self.connected_before = True
        try:
            await self.converse(connection)
        except ConnectionClosed as exc:
            cause = close_cause(exc)
            stats.disconnected(cause)
            fleet.on_first_error("disconnect", cause, exc)
            return False, True
        except BaseException:
            stats.disconnected(None)
            await connection.close()
            raise
        stats.disconnected(None)
        await connection.close()
        return True, True

    def url(self) -> str:
        return station_url(self.fleet.plan.url, self.cp_id)

    def dial_options(self) -> dict[str, Any]:
        options = self.fleet.connect_options
        password = self.fleet.plan.password
        if password is None:
            return options
        headers = {"Authorization": basic_auth_header(self.cp_id, password)}
        return {**options, "additional_headers": headers}

    async def boot_once(self, connection: ClientConnection) -> None:
        """BootNotification; the connection counts as up once the CSMS answered it."""
        answer = await self.call(
            connection, "BootNotification", self.fleet.boot_payload, counted=False
        )
        interval = answer.get("interval")
        if isinstance(interval, (int, float)) and interval > 0:
            self.interval = float(interval)
        if answer.get("status") == "Accepted":
            self.boot_accepted = True
            self.fleet.stats.boots_accepted += 1
        else:
            self.fleet.stats.boots_not_accepted += 1

    async def converse(self, connection: ClientConnection) -> None:
        """Boot again until accepted (Pending/Rejected), then the calls the plan asks for."""
        plan = self.fleet.plan
        loop = asyncio.get_running_loop()
        while not self.boot_accepted:
            await self.idle_until(connection, loop.time() + self.interval)
            try:
                await self.boot_once(connection)
            except CallFailed:
                continue
        pace = plan.pace(self.interval)
        calls = 0
        next_at = loop.time()
        while plan.calls_per_cp is None or calls < plan.calls_per_cp:
            if pace > 0 and calls > 0:
                # Scheduled, not slept: a slow answer does not push every later call back.
                next_at = max(next_at + pace, loop.time())
                await self.idle_until(connection, next_at)
            calls += 1
            try:
                await self.call(connection, "Heartbeat", "{}")
            except CallFailed:
                continue

    async def call(
        self, connection: ClientConnection, action: str, payload: str, *, counted: bool = True
    ) -> dict[str, Any]:
        """Send a CALL and read until its answer; CSMS requests met meanwhile are answered.

        `counted` False (the BootNotification): a good answer is not one of the `--calls`, so
        it stays out of `calls_ok`, the call rate and the latency (boots have their own
        counters); a failure is still counted, as every failed call is."""
        stats = self.fleet.stats
        self.next_id += 1
        message_id = str(self.next_id)
        started = time.perf_counter()
        if counted:
            stats.call_sent(started)
        try:
            await connection.send(f'[2,"{message_id}","{action}",{payload}]')
            async with asyncio.timeout(self.fleet.plan.call_timeout):
                while True:
                    message = self.parse(await connection.recv())
                    if message is None:
                        continue
                    if message[0] == 2:
                        await self.refuse_request(connection, message)
                        continue
                    if message[1] != message_id:
                        stats.unexpected_frames += 1
                        continue
                    break
        except TimeoutError:
            stats.call_failed("timeout")
            raise CallFailed("timeout") from None
        except ConnectionClosed:
            if self.boot_accepted:  # before that, the close is a refusal: a connect error
                stats.call_failed("connection_closed")
            raise
        if message[0] == 3 and isinstance(message[2], dict):
            if counted:
                stats.call_answered(time.perf_counter() - started)
            return message[2]
        cause = f"callerror_{message[2]}" if message[0] == 4 else "malformed_answer"
        stats.call_failed(cause)
        raise CallFailed(cause)

    async def idle_until(self, connection: ClientConnection, deadline: float) -> None:
        """Wait for the next call's time while answering whatever the CSMS sends."""
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    message = self.parse(await connection.recv())
                    if message is None:
                        continue
                    if message[0] == 2:
                        await self.refuse_request(connection, message)
                    else:
                        self.fleet.stats.unexpected_frames += 1
        except TimeoutError:
            return

    def parse(self, frame: str | bytes) -> list[Any] | None:
        """An OCPP-J message as [type, id, ...], or None (counted) for anything else."""
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        if (
            isinstance(message, list)
            and len(message) >= 3
            and message[0] in (2, 3, 4)
            and isinstance(message[1], str)
        ):
            return message
        self.fleet.stats.unexpected_frames += 1
        return None

    async def refuse_request(self, connection: ClientConnection, message: list[Any]) -> None:
        self.fleet.stats.csms_calls += 1
        await connection.send(json.dumps([4, message[1], "NotImplemented", NOT_IMPLEMENTED, {}]))
