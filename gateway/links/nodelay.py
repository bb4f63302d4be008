"""Turn Nagle's algorithm off on the AWS CRT's connections to the broker.

The CRT has no TCP_NODELAY option. With Nagle's algorithm on, a PUBLISH that follows the CRT's
PUBACK of a message it received waits until the broker acknowledges that PUBACK, which a Linux
broker delays by up to 40 ms. Measured one CP at a time on the per-CP link, a publish took 42 ms
with Nagle on and 0.09 ms with it off; on the shared link, 200 closed-loop CPs made 3,400
calls/s at a median of 61 ms with it on, 5,000 calls/s at 33 ms with it off.

The process's sockets are listed in /proc/self/fd (Linux; elsewhere this does nothing). With
thousands of charge points that list is long, so a `NagleSwitch` looks at each descriptor once
(again only when it is reused), turns Nagle off for every connection that came up since its last
pass in one pass, and spaces its passes so that they take a tenth of the time at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

PROC_FDS = "/proc/self/fd"
# Passes are at least this many times the last one's duration apart.
SPACING_FACTOR = 10


class NagleSwitch:
    def __init__(self, port: int) -> None:
        self.port = port
        # Descriptor -> (device, inode) of the file it was when looked at.
        self._seen: dict[int, tuple[int, int]] = {}
        self._pass: asyncio.TimerHandle | None = None
        self._next_pass_at = 0.0  # loop time

    def turn_off_soon(self) -> None:
        """A connection to the port came up: the next pass turns Nagle off on it."""
        if self._pass is None:
            loop = asyncio.get_running_loop()
            self._pass = loop.call_at(max(loop.time(), self._next_pass_at), self._run_pass)

    def _run_pass(self) -> None:
        self._pass = None
        started = time.perf_counter()
        self.turn_off()
        spacing = (time.perf_counter() - started) * SPACING_FACTOR
        self._next_pass_at = asyncio.get_running_loop().time() + spacing

    def turn_off(self) -> int:
        """Set TCP_NODELAY on the sockets connected to the port that are new since the last
        pass; how many."""
        if not os.path.isdir(PROC_FDS):
            return 0
        seen: dict[int, tuple[int, int]] = {}
        changed = 0
        for name in os.listdir(PROC_FDS):
            with contextlib.suppress(OSError, ValueError):
                fd = int(name)
                status = os.fstat(fd)
                identity = (status.st_dev, status.st_ino)
                if self._seen.get(fd) == identity:
                    seen[fd] = identity
                    continue
                verdict = _turn_off_if_towards(fd, self.port)
                if verdict is not None:  # else still connecting: looked at again next time
                    seen[fd] = identity
                    changed += verdict
        self._seen = seen
        return changed


def _turn_off_if_towards(fd: int, port: int) -> int | None:
    """1 if Nagle was turned off, 0 if `fd` is no TCP socket connected to `port`, None if it is
    a TCP socket that is not connected yet."""
    if not os.readlink(f"{PROC_FDS}/{fd}").startswith("socket:"):
        return 0
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return 0
        try:
            peer_port = sock.getpeername()[1]
        except OSError:
            return None
        if peer_port != port:
            return 0
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return 1
    finally:
        sock.detach()
