"""Open files: each charge point holds one socket, and the kernel caps sockets per process."""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass

RESERVED_FILES = 64
"""Files the process needs besides its connections (interpreter, event loop, stdio, logs)."""


@dataclass(frozen=True)
class OpenFilesLimit:
    soft: int
    hard: int

    @property
    def capacity(self) -> int:
        """How many charge points fit under the soft limit."""
        return max(0, self.soft - RESERVED_FILES)


def raise_open_files_limit() -> OpenFilesLimit:
    """Lift the soft RLIMIT_NOFILE to the hard limit (allowed without privileges)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    else:
        target = hard
    if soft != resource.RLIM_INFINITY and soft < target:
        # On refusal the soft limit stays; the capacity check then says what that means.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return OpenFilesLimit(soft=_finite(soft), hard=_finite(hard))


def _finite(limit: int) -> int:
    return 1 << 30 if limit == resource.RLIM_INFINITY else limit


def over_limit_message(count: int, limit: OpenFilesLimit) -> str | None:
    """Why `count` charge points cannot run in this process, or None when they can."""
    if count <= limit.capacity:
        return None
    return (
        f"--count {count:,} needs about {count + RESERVED_FILES:,} open files, but this process "
        f"may open at most {limit.soft:,} (RLIMIT_NOFILE soft {limit.soft:,}, hard "
        f"{limit.hard:,}); lower --count to {limit.capacity:,} or less, or run several "
        "processes (e.g. with --id-start to give each its own ids)"
    )
