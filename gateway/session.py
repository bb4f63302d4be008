"""One charge point's session: its WebSocket and its broker channel, pumped both ways."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from websockets.exceptions import ConnectionClosed

from gateway import closes, presence
from gateway.closes import Close
from gateway.cp_connection import CpConnection
from gateway.cp_stats import CpStats
from gateway.links.base import BrokerUnavailable, Channel, Link, LinkLost, TakenOver
from gateway.notices import UNDELIVERED_REASONS
from gateway.observability import Metrics
from gateway.ocppj import FrameProblem, call_error, frame_problem
from gateway.presence import ClosedBy, Presence
from gateway.sessions import SessionTable

log = structlog.get_logger(__name__)

_connection_numbers = itertools.count(1)


class Session:
    def __init__(
        self,
        websocket: CpConnection,
        cp_id: str,
        subprotocol: str,
        link: Link,
        table: SessionTable,
        metrics: Metrics,
        backpressure_seconds: float,
        write_timeout: float = 30.0,
        since: float | None = None,
    ) -> None:
        self.cp_id = cp_id
        self.subprotocol = subprotocol
        self.connection_number = next(_connection_numbers)
        self._websocket = websocket
        self._link = link
        self._table = table
        self._metrics = metrics
        self._backpressure_seconds = backpressure_seconds
        self._write_timeout = write_timeout
        self.since = since if since is not None else time.time()  # the handshake, wall clock
        self._finished = asyncio.Event()
        self._closing = False
        self._not_reading = False  # its socket took nothing for `write_timeout` seconds
        self._closed_by: ClosedBy | None = None
        self._channel: Channel | None = None
        self._background: set[asyncio.Task[None]] = set()
        # Set while a CP frame waits for the broker: the WebSocket is not read meanwhile, so
        # TCP holds the CP back. The gateway counts long waits as backpressure.
        self.publishing_since: float | None = None
        self.stats = CpStats(since=self.since)
        self._log = log.bind(cp_id=cp_id, connection=self.connection_number)
        websocket.watch_writes(write_timeout, self._not_reading_stalled)

    async def run(self, takeover_wait: float) -> None:
        """Serve the charge point until either side ends the session."""
        previous = self._table.install(self)
        try:
            if previous is not None:
                await previous.yield_to(self, takeover_wait)
                if not self._table.is_current(self):
                    return  # an even newer connection replaced this one while it waited
            await self._serve()
        finally:
            self._table.remove(self)
            self._finished.set()

    async def _serve(self) -> None:
        try:
            channel = await self._link.open_channel(
                self.cp_id,
                self.subprotocol,
                self._send_to_cp,
                self._on_link_lost,
                since=self.since,
                presence=Presence(presence.online(self._about), presence.will(self._about)),
            )
        except BrokerUnavailable as exc:
            self._log.warning("cp.refused", reason="broker unavailable", error=str(exc))
            await self.close(closes.broker_unavailable(), ClosedBy.BROKER_LOSS)
            return
        except TakenOver:
            self._metrics.takeovers.labels(where="other_gateway").inc()
            self._log.info("cp.taken_over", by="another gateway", while_opening=True)
            await self.close(closes.taken_over_by_other_gateway(), ClosedBy.TAKEOVER)
            return
        self._channel = channel
        self._metrics.connections.inc()
        self._log.info("cp.connected", subprotocol=self.subprotocol)
        started = time.monotonic()
        try:
            await self._pump_cp_frames(channel)
        except Exception:
            # A bug must not leave the CP half-open: say where, then close it.
            self._log.exception("cp.pump_failed", direction="in")
            await self.close(closes.internal_error())
        finally:
            await channel.close(farewell=self._farewell())
            self._metrics.connections.dec()
            self._log.info(
                "cp.disconnected",
                code=self._websocket.close_code,
                reason=self._websocket.close_reason,
                seconds=round(time.monotonic() - started, 3),
            )

    async def _pump_cp_frames(self, channel: Channel) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self._websocket:
                if isinstance(message, bytes):
                    self._metrics.frames_rejected.labels(direction="in", reason="binary").inc()
                    await self.close(closes.binary_frame())
                    return
                problem = frame_problem(message)
                if problem is not None:
                    await self._refuse_cp_frame(problem)
                    continue
                payload = message.encode()
                received = self.publishing_since = time.monotonic()
                try:
                    await channel.publish(payload)
                except BrokerUnavailable as exc:
                    self._metrics.frames_dropped.labels(
                        direction="in", reason="broker_unavailable"
                    ).inc()
                    self._log.error("frame.dropped", direction="in", error=str(exc))
                    await self.close(closes.broker_unavailable(), ClosedBy.BROKER_LOSS)
                    return
                finally:
                    self.publishing_since = None
                waited = time.monotonic() - received
                self._metrics.publish_seconds.observe(waited)
                if waited > self._backpressure_seconds:
                    self._metrics.backpressure.inc()
                bridged = self._metrics.bridged
                bridged.frames_in += 1
                bridged.bytes_in += len(payload)
                self.stats.frame_in(len(payload))

    async def _refuse_cp_frame(self, problem: FrameProblem) -> None:
        self._metrics.frames_rejected.labels(direction="in", reason=problem.error_code).inc()
        self._log.info(
            "frame.rejected",
            direction="in",
            error_code=problem.error_code,
            description=problem.description,
            answered=problem.answer,
        )
        if problem.answer:
            await self._websocket.send(call_error(problem, self.subprotocol))

    async def _send_to_cp(self, payload: bytes) -> None:
        """Deliver one message from the broker to the charge point, never raising."""
        try:
            await self._check_and_send(payload)
        except Exception:
            self._log.exception("cp.pump_failed", direction="out")
            self._drop_outbound("internal_error", "the gateway failed to deliver it")
            self._in_background(self.close(closes.internal_error()))

    async def _check_and_send(self, payload: bytes) -> None:
        if self._closing:
            self._drop_outbound(
                "cp_disconnected", "the charge point is being disconnected", payload
            )
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self._drop_outbound("invalid_utf8", "the message is not valid UTF-8 text")
            return
        try:
            problem = frame_problem(text)
        except RecursionError:
            problem = FrameProblem("FormatViolation", "nested too deeply", "-1", answer=False)
        if problem is not None:
            self._drop_outbound("malformed", problem.description)
            return
        try:
            # Waits while the CP does not read; cp_connection.py ends the wait if it never does.
            await self._websocket.send(text)
        except ConnectionClosed:
            if self._not_reading:
                self._drop_outbound(
                    "cp_not_reading", f"not accepted within {self._write_timeout} s", payload
                )
            else:
                self._drop_outbound(
                    "cp_disconnected", "the charge point is no longer connected", payload
                )
            return
        bridged = self._metrics.bridged
        bridged.frames_out += 1
        bridged.bytes_out += len(payload)
        self.stats.frame_out(len(payload))

    def _not_reading_stalled(self) -> None:
        self._not_reading = True
        self._metrics.write_timeouts.inc()
        self._in_background(self._close_not_reading())

    async def _close_not_reading(self) -> None:
        """Close a CP whose socket stopped draining; drop its TCP connection if it won't read."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.close(closes.cp_not_reading(self._write_timeout))
        self._websocket.transport.abort()

    def _drop_outbound(self, reason: str, description: str, message: bytes | None = None) -> None:
        self._metrics.frames_dropped.labels(direction="out", reason=reason).inc()
        if message is not None and reason in UNDELIVERED_REASONS and self._channel is not None:
            self._channel.report_undelivered(message, reason)
        self._log.warning("frame.dropped", direction="out", reason=reason, description=description)

    def _on_link_lost(self, reason: LinkLost) -> None:
        if reason is LinkLost.TAKEN_OVER:
            self._metrics.takeovers.labels(where="other_gateway").inc()
            self._log.info("cp.taken_over", by="another gateway")
            self._in_background(self.close(closes.taken_over_by_other_gateway(), ClosedBy.TAKEOVER))
        else:
            self._log.error("cp.closed", reason="broker unavailable past the grace period")
            self._in_background(self.close(closes.broker_unavailable(), ClosedBy.BROKER_LOSS))

    async def yield_to(self, newer: Session, wait: float) -> None:
        """Close this session for a newer connection of the same CP and wait for its teardown."""
        self._metrics.takeovers.labels(where="this_gateway").inc()
        self._log.info("cp.replaced", by_connection=newer.connection_number)
        self._in_background(self.close(closes.replaced_by_newer_connection(), ClosedBy.TAKEOVER))
        try:
            await asyncio.wait_for(self._finished.wait(), wait)
        except TimeoutError:
            self._log.warning("cp.replace_slow", waited=wait)

    async def close(self, close: Close, by: ClosedBy = ClosedBy.GATEWAY) -> None:
        if self._closing:
            return  # the first reason stands
        self._closing = True
        self._closed_by = by
        self._metrics.closes.labels(code=str(close.code)).inc()
        websocket = self._websocket
        # A CP that reads nothing keeps even the close frame from leaving (websockets waits for
        # its buffer to drain first); past the close timeout its connection is dropped.
        try:
            async with asyncio.timeout(websocket.close_timeout):
                await websocket.close(close.code, close.reason)
        except TimeoutError:
            self._log.info("cp.close_timed_out", code=close.code)
            websocket.transport.abort()

    @property
    def _about(self) -> presence.Connection:
        remote = self._websocket.remote_address
        broker = self._link.broker
        return presence.Connection(
            cp_id=self.cp_id,
            gateway=broker.gateway_id,
            instance=broker.nonce,
            connection=self.connection_number,
            subprotocol=self.subprotocol,
            remote=f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else None,
            since=self.since,
        )

    def _farewell(self) -> bytes | None:
        """The offline presence document; none after a takeover (the new holder's stands)."""
        closed_by = self._closed_by or _closed_by_peer_or_server(self._websocket)
        if closed_by is ClosedBy.TAKEOVER:
            return None
        websocket = self._websocket
        return presence.offline(
            self._about, time.time(), websocket.close_code, websocket.close_reason or "", closed_by
        )

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _closed_by_peer_or_server(websocket: CpConnection) -> ClosedBy:
    """Who closed when the session did not: the CP, or the server shutting down (1012)."""
    protocol = websocket.protocol
    if protocol.close_rcvd_then_sent is False:  # the server's close frame went first
        sent = protocol.close_sent
        restarting = sent is not None and sent.code == closes.SERVICE_RESTART
        return ClosedBy.SHUTDOWN if restarting else ClosedBy.GATEWAY
    return ClosedBy.CP
