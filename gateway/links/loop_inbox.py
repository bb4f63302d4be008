"""Hands calls from other threads to an asyncio loop, many per wake-up.

The AWS CRT completes every publish and delivers every message on its own threads. Scheduling
each one with `loop.call_soon_threadsafe` costs a handle and a wake-up of the loop per message;
under load the inbox instead collects what arrives while the loop is busy and runs it in one
go, in arrival order.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

Call = tuple[Callable[..., object], tuple[Any, ...]]


class LoopInbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: deque[Call] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def post(self, callback: Callable[..., object], *args: Any) -> None:
        """Run `callback(*args)` on the loop soon; safe from any thread, dropped once it closed."""
        with self._lock:
            self._calls.append((callback, args))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._run_all)
        except RuntimeError:  # the loop is closed: the gateway has stopped, nobody waits
            with self._lock:
                self._calls.clear()
                self._scheduled = False

    def _run_all(self) -> None:
        with self._lock:
            calls = self._calls
            self._calls = deque()
            self._scheduled = False
        for callback, args in calls:
            try:
                callback(*args)
            except Exception as exc:  # one failing call must not lose the others
                self.loop.call_exception_handler(
                    {"message": f"exception in {callback!r}", "exception": exc}
                )
