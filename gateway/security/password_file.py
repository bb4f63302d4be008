"""The password file of a running gateway: read at start, read again when it changes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import structlog

from gateway.security.errors import SecurityMisconfigured
from gateway.security.passwords import PasswordHash, parse_password_file
from gateway.watched_file import FilePoller, FileVersion, read_versioned

log = structlog.get_logger(__name__)


class PasswordFile:
    """The password file, read at start and again whenever it changes (checked every
    `poll_interval` seconds, like the registry file). If it later disappears or cannot be read,
    the last good passwords are kept and the problem is logged once.
    """

    def __init__(self, path: Path, poll_interval: float = 1.0) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self._hashes: Mapping[str, PasswordHash] = {}
        self._loaded: FileVersion | None = None
        self._problem: str | None = None
        self._poller = FilePoller(
            self.reload_if_changed, poll_interval, "security.password_file_check_failed", path
        )

    def __len__(self) -> int:
        return len(self._hashes)

    def hash_for(self, cp_id: str) -> PasswordHash | None:
        return self._hashes.get(cp_id)

    def load(self) -> None:
        """The first read; raises `SecurityMisconfigured` when the file cannot be read."""
        try:
            version, text = read_versioned(self.path)
        except FileNotFoundError:
            raise SecurityMisconfigured(
                f"GATEWAY_PASSWORD_FILE: {self.path} does not exist; create it with "
                "`ocpp-things password <cpId>`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityMisconfigured(
                f"GATEWAY_PASSWORD_FILE: cannot read {self.path}: {exc}"
            ) from None
        self._use(version, text)

    async def start(self) -> None:
        if self._loaded is None:
            self.load()
        self._poller.start()

    async def close(self) -> None:
        await self._poller.stop()

    async def reload_if_changed(self) -> bool:
        try:
            if FileVersion.of(os.stat(self.path)) == self._loaded:
                return False
            version, text = await asyncio.to_thread(read_versioned, self.path)
        except FileNotFoundError:
            self._report_problem("missing")
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self._report_problem(f"unreadable: {exc}")
            return False
        self._use(version, text)
        return True

    def _use(self, version: FileVersion, text: str) -> None:
        parsed = parse_password_file(text)
        previous = self._hashes
        self._hashes = parsed.hashes
        self._loaded = version
        self._problem = None
        for problem in parsed.problems[:20]:
            log.warning(
                "security.password_line_skipped",
                path=str(self.path),
                line=problem.line_number,
                reason=problem.reason,
            )
        log.info(
            "security.password_file_loaded",
            path=str(self.path),
            passwords=len(parsed.hashes),
            changed=sum(
                1
                for cp_id in previous.keys() | parsed.hashes.keys()
                if previous.get(cp_id) != parsed.hashes.get(cp_id)
            ),
            skipped_lines=len(parsed.problems),
        )

    def _report_problem(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning(
                "security.password_file_kept_last_good",
                path=str(self.path),
                problem=problem,
                passwords=len(self._hashes),
            )
