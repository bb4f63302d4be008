"""`FileRegistry`: charge point ids from a local file, picked up when the file changes.

The file holds one id per line; surrounding whitespace, blank lines and lines starting with
`#` are ignored. A line may carry more after the id, separated by whitespace: it is reserved for
credentials and ignored for now. `ocpp-things` edits the file safely::

    # Charge points allowed to connect
    CP1
    CP2   anything after the id is ignored

Lines whose id is not a valid charge point id are skipped with a warning naming the line; the
other ids still load.

The file is checked at most once per `poll_interval` seconds by a background task that compares
its inode, size and modification time; it is read again only when those change, never per
lookup. A missing file means no ids (with one warning) until it appears. If the file later
disappears or cannot be read, the last good set of ids is kept and the problem is logged once.
Replace the file atomically (write a temporary file, then rename it) so the gateway never reads
a half-written version; `ocpp-things` does this.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from gateway.registry.things_file import ParsedThings, parse_things
from gateway.watched_file import FilePoller, FileVersion, read_versioned

log = structlog.get_logger(__name__)

DEFAULT_POLL_INTERVAL = 1.0
MAX_LOGGED_PROBLEMS = 20


class FileRegistry:
    loaded = True  # read in full by `start()`

    def __init__(self, path: Path | str, *, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._ids: frozenset[str] = frozenset()
        self._loaded: FileVersion | None = None
        self._failed: FileVersion | None = None
        self._problem: str | None = None
        self._poller = FilePoller(
            self.reload_if_changed, poll_interval, "registry.file_check_failed", self.path
        )

    @property
    def ids(self) -> frozenset[str]:
        return self._ids

    async def start(self) -> None:
        await self.reload_if_changed()
        self._poller.start()

    async def is_registered(self, cp_id: str) -> bool:
        return cp_id in self._ids

    def invalidate(self, cp_id: str) -> None:
        """Nothing to do: the file is the only source, and it is read when it changes."""

    async def close(self) -> None:
        await self._poller.stop()

    async def reload_if_changed(self) -> bool:
        """Read the file again if it changed since the last load; True when new ids were loaded."""
        try:
            version = FileVersion.of(os.stat(self.path))
        except FileNotFoundError:
            self._report_problem("missing")
            return False
        except OSError as exc:
            self._report_problem(f"unreadable: {exc}")
            return False
        if version in (self._loaded, self._failed):
            return False
        try:
            version, text = await asyncio.to_thread(read_versioned, self.path)
        except FileNotFoundError:
            self._report_problem("missing")
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self._failed = version
            self._report_problem(f"unreadable: {exc}")
            return False
        self._load(version, parse_things(text))
        return True

    def _load(self, version: FileVersion, parsed: ParsedThings) -> None:
        previous = self._ids
        self._ids = parsed.ids
        self._loaded = version
        self._failed = None
        self._problem = None
        for problem in parsed.problems[:MAX_LOGGED_PROBLEMS]:
            log.warning(
                "registry.file_line_skipped",
                path=str(self.path),
                line=problem.line_number,
                text=problem.text[:80],
                reason=problem.reason,
            )
        log.info(
            "registry.file_loaded",
            path=str(self.path),
            ids=len(parsed.ids),
            added=len(parsed.ids - previous),
            removed=len(previous - parsed.ids),
            skipped_lines=len(parsed.problems),
        )

    def _report_problem(self, problem: str) -> None:
        if problem == self._problem:
            return
        self._problem = problem
        if self._loaded is None:
            log.warning(
                "registry.file_not_loaded",
                path=str(self.path),
                problem=problem,
                ids=0,
                hint="every charge point is refused until the file can be read; "
                "create it with `ocpp-things add <cpId>`",
            )
        else:
            log.warning(
                "registry.file_kept_last_good",
                path=str(self.path),
                problem=problem,
                ids=len(self._ids),
            )
