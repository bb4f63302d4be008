"""Admission policy: who may start a handshake now, and what a refused one is told. Pure: no I/O.

The server asks these classes and functions before the upgrade and does what they answer:

- `AdmissionGate`: connections held (admitted and not yet closed) against the connection limit,
  and handshakes in progress (accepted, not yet upgraded) against the storm threshold. A
  connection is held from the moment it is admitted, before the registry or the password check
  answers, so a slow registry cannot let more in than the limit.
- `default_max_connections`: the connection limit the open-files limit allows for a link mode.
- `FailureLimiter`: failed password checks per charge point id and per source address; past the
  allowance, attempts are refused with 429 before any password is checked.
- `retry_after`: the jittered `Retry-After` of a 503, so refused charge points do not all come
  back in the same second.
- `close_offsets`: when each connection is closed during a shutdown spread over a window.
- `is_accept_exhaustion`: whether an event-loop error is `accept()` failing for lack of file
  descriptors (EMFILE/ENFILE), which the server counts and logs.
"""

from __future__ import annotations

import errno
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

# -- the connection limit and the storm threshold ---------------------------------------------


class Refusal(StrEnum):
    """Why `AdmissionGate.enter` refused: also the value of the metric's `reason` label."""

    CONNECTION_LIMIT = "connection_limit"
    STORM = "storm"


REFUSAL_REASONS: Mapping[Refusal, str] = {
    Refusal.CONNECTION_LIMIT: "the gateway is at its connection limit; retry later",
    Refusal.STORM: "the gateway has too many handshakes in progress; retry later",
}


@dataclass
class Ticket:
    """One accepted connection, from `AdmissionGate.accepted` until `.release`."""

    handshaking: bool = True
    held: bool = False
    released: bool = False


class AdmissionGate:
    """Counts handshakes in progress and connections held, and refuses past either limit.

    - `accepted()` when a TCP connection is accepted: a handshake in progress from now, while
      it waits for the event loop to read its request too. In a storm that wait is where time
      goes, so the storm threshold counts it.
    - `admit(ticket)` before the checks that wait (password, registry): None admits, and the
      connection is held against the connection limit until released; a `Refusal` says why not.
    - `upgraded(ticket)` when the handshake is over (the WebSocket is open, or a refusal sent).
    - `release(ticket)` when the TCP connection is gone, however it ended.

    All are idempotent, so the counts stay right whatever order the ends arrive in.
    """

    def __init__(self, max_connections: int, max_handshakes: int) -> None:
        if max_connections < 1 or max_handshakes < 1:
            raise ValueError(
                f"limits must be >= 1, got max_connections={max_connections} and "
                f"max_handshakes={max_handshakes}"
            )
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.held = 0
        self.handshaking = 0

    def accepted(self) -> Ticket:
        self.handshaking += 1
        return Ticket()

    def admit(self, ticket: Ticket) -> Refusal | None:
        if ticket.held or ticket.released:
            return None
        if self.held >= self.max_connections:
            return Refusal.CONNECTION_LIMIT
        # `ticket` itself is one of the handshakes in progress.
        if self.handshaking > self.max_handshakes:
            return Refusal.STORM
        ticket.held = True
        self.held += 1
        return None

    def upgraded(self, ticket: Ticket) -> None:
        if ticket.handshaking:
            ticket.handshaking = False
            self.handshaking -= 1

    def release(self, ticket: Ticket) -> None:
        self.upgraded(ticket)
        if not ticket.released:
            ticket.released = True
            if ticket.held:
                self.held -= 1


# File descriptors a charge point costs: its WebSocket, plus its own MQTT connection per-CP.
FDS_PER_CP = {"per-cp": 2, "shared": 1}
# Kept free for the broker link, the registry's connections, log and watched files, and the
# accept() of connections that are then refused with 503.
FD_RESERVE_MIN = 100
FD_RESERVE_SHARE = 0.05


def default_max_connections(open_files_limit: int, link_mode: str) -> int:
    """The connection limit under `open_files_limit` (RLIMIT_NOFILE's soft limit).

    Each charge point costs `FDS_PER_CP[link_mode]` descriptors; a reserve of 5% (at least 100)
    stays free so the gateway refuses with 503 before `accept()` fails with EMFILE. At least 1.
    """
    if open_files_limit <= 0:  # RLIM_INFINITY is -1
        open_files_limit = 1_048_576
    reserve = max(FD_RESERVE_MIN, math.ceil(open_files_limit * FD_RESERVE_SHARE))
    return max(1, (open_files_limit - reserve) // FDS_PER_CP.get(link_mode, 2))


# -- failed password checks -------------------------------------------------------------------


class FailureLimiter:
    """Failed attempts per key, as a token bucket: `allowance` failures at once, then one more
    every `window / allowance` seconds.

    `retry_after(key)` is None while `key` may try again, or the seconds until it may. Keys are
    bounded to `max_keys` (the least recently failed dropped first), so a flood of made-up ids
    or addresses cannot grow memory without limit. An allowance of 0 turns the limiter off.
    """

    def __init__(
        self,
        allowance: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if allowance < 0 or window <= 0:
            raise ValueError(f"allowance must be >= 0 and window > 0, got {allowance} and {window}")
        self.allowance = allowance
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens left, when they were counted); most recently failed last.
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.allowance > 0

    def _tokens(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.allowance)
        tokens, since = bucket
        return min(float(self.allowance), tokens + (now - since) * self.allowance / self.window)

    def retry_after(self, key: str) -> float | None:
        if not self.enabled:
            return None
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return None
        return (1.0 - tokens) * self.window / self.allowance

    def failed(self, key: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        tokens = max(0.0, self._tokens(key, now) - 1.0)
        self._buckets.pop(key, None)
        while len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = (tokens, now)

    def succeeded(self, key: str) -> None:
        """A right password: the charge point's earlier mistakes are forgiven."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


# -- what refused charge points are told ------------------------------------------------------


def retry_after(low: float, high: float, uniform: Callable[[float, float], float]) -> int:
    """Whole seconds for a `Retry-After` header, drawn from [low, high] with `uniform`.

    HTTP allows whole seconds only; at least 1, so that no client is told to come straight back.
    """
    return max(1, round(uniform(low, max(low, high))))


def retry_after_seconds(seconds: float) -> int:
    """`seconds` as a `Retry-After` value: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


def close_offsets(
    count: int, spread: float, uniform: Callable[[float, float], float] = random.uniform
) -> list[float]:
    """Seconds after the start of a shutdown at which each of `count` connections is closed.

    Evenly spaced over `spread` with a jitter of up to one slot, so that the charge points of a
    stopping replica reconnect to the others over the window rather than in one second.
    """
    if count <= 0:
        return []
    if spread <= 0:
        return [0.0] * count
    slot = spread / count
    return [min(spread, index * slot + uniform(0.0, slot)) for index in range(count)]


def spread_within(spread: float, shutdown_timeout: float, close_timeout: float) -> float:
    """The spread actually used: the last close must still finish within the shutdown timeout."""
    return max(0.0, min(spread, shutdown_timeout - close_timeout))


# -- accept() running out of file descriptors -------------------------------------------------

_EXHAUSTION = {errno.EMFILE: "EMFILE", errno.ENFILE: "ENFILE"}


def is_accept_exhaustion(context: Mapping[str, object]) -> str | None:
    """The errno name when an event loop's exception-handler `context` reports `accept()`
    failing for lack of file descriptors (asyncio: "socket.accept() out of system resource";
    uvloop: the listening handle's error), else None.
    """
    exception = context.get("exception")
    if not isinstance(exception, OSError) or exception.errno not in _EXHAUSTION:
        return None
    message = str(context.get("message", ""))
    if "accept" in message or "listen" in message or "server" in message.lower():
        return _EXHAUSTION[exception.errno]
    return None
