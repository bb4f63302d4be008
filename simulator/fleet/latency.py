"""Latency percentiles in constant memory, however many calls a run makes.

Samples fall into logarithmic buckets 1 % wide, from 1 µs to about 1,000 s; a percentile is the
upper edge of the bucket holding the nearest-rank sample, so it is never below the exact value
and at most 1 % above it (and never above the largest sample, which is kept exactly).
"""

from __future__ import annotations

import math

LOWEST = 1e-6
GROWTH = 1.01
_LOG_GROWTH = math.log(GROWTH)
BUCKETS = int(math.log(1000.0 / LOWEST) / _LOG_GROWTH) + 2


def bucket_of(seconds: float) -> int:
    if seconds <= LOWEST:
        return 0
    return min(int(math.log(seconds / LOWEST) / _LOG_GROWTH) + 1, BUCKETS - 1)


def bucket_upper_edge(index: int) -> float:
    return float(LOWEST * GROWTH**index)


def nearest_rank(percent: float, count: int) -> int:
    """1-based rank of the `percent` percentile among `count` sorted samples."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a percentile lies between 0 and 100, not {percent}")
    return max(1, math.ceil(percent / 100.0 * count))


class LatencyHistogram:
    def __init__(self) -> None:
        self._counts = [0] * BUCKETS
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self.minimum = math.inf

    def record(self, seconds: float) -> None:
        self._counts[bucket_of(seconds)] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.maximum:
            self.maximum = seconds
        if seconds < self.minimum:
            self.minimum = seconds

    def merge(self, other: LatencyHistogram) -> None:
        for index, count in enumerate(other._counts):
            self._counts[index] += count
        self.count += other.count
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)
        self.minimum = min(self.minimum, other.minimum)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, percent: float) -> float | None:
        """The `percent` percentile in seconds (None without samples)."""
        if not self.count:
            return None
        rank = nearest_rank(percent, self.count)
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                return max(self.minimum, min(bucket_upper_edge(index), self.maximum))
        return self.maximum
