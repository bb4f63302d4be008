"""The OCPP reconnect back-off [OCPP-J 5.3], driven by the OCPP 2.0.1 `RetryBackOff*` variables.

The first reconnection waits `RetryBackOffWaitMinimum` seconds plus a random share of
`RetryBackOffRandomRange`; every further failed attempt doubles the fixed part, at most
`RetryBackOffRepeatTimes` times, and then keeps the last value. A fresh random share is added
every time, so a fleet that lost its gateway at the same instant does not come back at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryBackOff:
    """The three OCPP variables, in seconds and attempts."""

    wait_minimum: float = 5.0
    random_range: float = 5.0
    repeat_times: int = 5

    def __post_init__(self) -> None:
        if self.wait_minimum < 0:
            raise ValueError(f"RetryBackOffWaitMinimum must be >= 0, not {self.wait_minimum}")
        if self.random_range < 0:
            raise ValueError(f"RetryBackOffRandomRange must be >= 0, not {self.random_range}")
        if self.repeat_times < 0:
            raise ValueError(f"RetryBackOffRepeatTimes must be >= 0, not {self.repeat_times}")

    def fixed_part(self, attempt: int) -> float:
        """The delay before reconnection `attempt` (0 = first) without its random share."""
        doublings = min(max(attempt, 0), self.repeat_times)
        return self.wait_minimum * float(2**doublings)


class ReconnectDelays:
    """Delays for one charge point's successive reconnection attempts; `reset()` once connected."""

    def __init__(
        self,
        settings: RetryBackOff,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.settings = settings
        self._uniform = uniform
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        fixed = self.settings.fixed_part(self._attempt)
        self._attempt += 1
        return fixed + self._uniform(0.0, self.settings.random_range)

    def reset(self) -> None:
        self._attempt = 0
