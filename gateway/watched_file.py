"""Files the gateway reads again whenever they change: the registry file, the password file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FileVersion:
    """What identifies one version of the file without reading it."""

    device: int
    inode: int
    size: int
    modified_ns: int
    changed_ns: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileVersion:
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def read_versioned(path: Path) -> tuple[FileVersion, str]:
    # The version comes from the open file, so it always matches the text that was read.
    with path.open(encoding="utf-8-sig") as file:
        version = FileVersion.of(os.fstat(file.fileno()))
        return version, file.read()


async def poll_for_changes(
    reload_if_changed: Callable[[], Awaitable[object]],
    interval: float,
    failure_event: str,
    path: Path,
) -> None:
    """Check the file every `interval` seconds, forever; a failed check is logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await reload_if_changed()
        except Exception:  # the watcher must outlive any surprise; the last good content stays
            log.exception(failure_event, path=str(path))
