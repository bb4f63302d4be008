"""Files the gateway reads again whenever they change: the registry file, the password file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.tasks import cancel_and_wait

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


class FilePoller:
    """Calls `reload_if_changed` every `interval` seconds in the background, until stopped.

    A failed check is logged as `failure_event` and the polling goes on: the last good content
    stays in use.
    """

    def __init__(
        self,
        reload_if_changed: Callable[[], Awaitable[object]],
        interval: float,
        failure_event: str,
        path: Path,
    ) -> None:
        self._reload_if_changed = reload_if_changed
        self._interval = interval
        self._failure_event = failure_event
        self._path = path
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name=f"watch-{self._path}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._reload_if_changed()
            except Exception:  # the poller must outlive any surprise
                log.exception(self._failure_event, path=str(self._path))
