"""Per-connection counters for the connected-CP API: frames and bytes each way, last frame.

A `Session` owns one `CpStats` and calls `frame_in`/`frame_out` once per bridged frame: two
integer additions and a clock read, nothing that allocates or takes a lock, so the hot path
stays as it is. The admin API reads the numbers when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class CpStats:
    since: float = field(default_factory=time.time)  # when the connection was accepted (epoch)
    frames_in: int = 0  # CP -> broker
    bytes_in: int = 0
    frames_out: int = 0  # broker -> CP
    bytes_out: int = 0
    last_frame_at: float | None = None  # epoch seconds, either direction

    def frame_in(self, size: int) -> None:
        self.frames_in += 1
        self.bytes_in += size
        self.last_frame_at = time.time()

    def frame_out(self, size: int) -> None:
        self.frames_out += 1
        self.bytes_out += size
        self.last_frame_at = time.time()
