"""The messages waiting for one charge point: bounded, in order, sent by one task.

The broker connection's reader only puts messages here and never waits for a charge point, so
one CP that does not read can neither hold up the others nor grow the gateway's memory: past
`limit` waiting messages, new ones are dropped and counted, and logged once per burst.
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
        on_drop: Callable[[bytes], None] | None = None,
    ) -> None:
        self._cp_id = cp_id
        self._on_drop = on_drop
        self._deliver = deliver
        self._limit = limit
        self._metrics = metrics
        self._pending: deque[bytes] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._dropped_in_burst = 0
        self._closed = False

    def put(self, payload: bytes) -> None:
        if self._closed:
            return
        if len(self._pending) >= self._limit:
            self._drop()
            if self._on_drop is not None:
                self._on_drop(payload)
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
        """Stop taking messages; let those queued reach the CP for a moment, then give up."""
        self._closed = True
        sender = self._sender
        if sender is None or sender is asyncio.current_task():
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(sender), FLUSH_ON_CLOSE)
        sender.cancel()
