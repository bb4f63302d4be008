"""The messages waiting for one charge point: bounded, in order, sent by one task.

The broker connection's reader only puts messages here and never waits for a charge point, so
one CP that does not read can neither hold up the others nor grow the gateway's memory: past
`limit` waiting messages, new ones are dropped and counted, and logged once per burst. Every
message dropped here, and every one still waiting when the channel closes, is handed to
`on_undelivered` with the reason, so the CSMS can be told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import structlog

from gateway.links.base import Deliver
from gateway.observability import Metrics

log = structlog.get_logger(__name__)

# How long a closing channel lets queued answers reach a CP that is still there.
FLUSH_ON_CLOSE = 1.0


class Outbox:
    def __init__(
        self,
        cp_id: str,
        deliver: Deliver,
        limit: int,
        metrics: Metrics,
        on_undelivered: Callable[[bytes, str], None],
    ) -> None:
        self._cp_id = cp_id
        self._on_undelivered = on_undelivered
        self._deliver = deliver
        self._limit = limit
        self._metrics = metrics
        self._pending: deque[bytes] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._dropped_in_burst = 0
        self._closed = False

    def put(self, payload: bytes) -> None:
        if self._closed:  # arrived while the channel was closing
            self._count_left_behind(1)
            self._on_undelivered(payload, "cp_disconnected")
            return
        if len(self._pending) >= self._limit:
            self._drop()
            self._on_undelivered(payload, "cp_too_slow")
            return
        self._pending.append(payload)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name=f"outbox-{self._cp_id}")

    def _drop(self) -> None:
        self._metrics.frames_dropped.labels(direction="out", reason="cp_too_slow").inc()
        if self._dropped_in_burst == 0:
            log.warning(
                "frame.dropped",
                cp_id=self._cp_id,
                direction="out",
                reason="cp too slow",
                queued=len(self._pending),
            )
        self._dropped_in_burst += 1

    async def _send_all(self) -> None:
        try:
            while self._pending:
                await self._deliver(self._pending.popleft())
                if not self._pending and self._dropped_in_burst:
                    log.warning(
                        "frame.drops_ended", cp_id=self._cp_id, dropped=self._dropped_in_burst
                    )
                    self._dropped_in_burst = 0
        finally:
            self._sender = None

    async def close(self) -> None:
        """Stop taking messages; let those queued reach the CP for a moment, then give up on
        the rest, counted and reported as undelivered."""
        self._closed = True
        sender = self._sender
        if sender is None or sender is asyncio.current_task():
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(sender), FLUSH_ON_CLOSE)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        self._give_up_on_pending()

    def _give_up_on_pending(self) -> None:
        if not self._pending:
            return
        self._count_left_behind(len(self._pending))
        log.warning(
            "frame.dropped",
            cp_id=self._cp_id,
            direction="out",
            reason="cp disconnected",
            count=len(self._pending),
        )
        for message in self._pending:
            self._on_undelivered(message, "cp_disconnected")
        self._pending.clear()

    def _count_left_behind(self, count: int) -> None:
        self._metrics.frames_dropped.labels(direction="out", reason="cp_disconnected").inc(count)
