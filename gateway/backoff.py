"""Capped exponential back-off with jitter, for reconnecting to the broker."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff_delays(
    initial: float = 0.1,
    maximum: float = 5.0,
    factor: float = 2.0,
    jitter: float = 0.2,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Iterator[float]:
    """Yield endless delays: initial, initial*factor, ... capped at maximum, each ±jitter."""
    delay = initial
    while True:
        yield max(0.0, delay * (1 + uniform(-jitter, jitter)))
        delay = min(delay * factor, maximum)
