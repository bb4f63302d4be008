"""A charge point's WebSocket connection: websockets' server connection, watched for stalled writes.

A send waits only while the socket's write buffer is above its high-water mark (the transport
is "paused"): the CP is not reading. Timing every send would cost a timer per message, the
commonest thing the gateway does; one timer per connection, running only while the transport is
paused, notices the same stall: paused for `timeout` seconds means the CP took nothing for that
long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.http_requests import AnsweringServerConnection


class CpConnection(AnsweringServerConnection):
    _on_stalled: Callable[[], None] | None = None
    _stall_after = 0.0
    _stall_timer: asyncio.TimerHandle | None = None

    def watch_writes(self, timeout: float, on_stalled: Callable[[], None]) -> None:
        """Call `on_stalled` once the socket has taken nothing for `timeout` seconds."""
        self._stall_after, self._on_stalled = timeout, on_stalled
        if self.paused:
            self._start_stall_timer()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._start_stall_timer()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_stall_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_stall_timer()
        super().connection_lost(exc)

    def _start_stall_timer(self) -> None:
        if self._on_stalled is not None and self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self._stall_after, self._stalled)

    def _stop_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if self._on_stalled is not None:
            self._on_stalled()
