"""Run the simulator as users do (`cd simulator && python simulate.py ...`) and read its output."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_DIR = REPO_ROOT / "simulator"


class SimulatorProcess:
    """A `simulate.py` subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls,
        *arguments: str,
        command: tuple[str, ...] = ("simulate.py",),
        cwd: Path = SIMULATOR_DIR,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> SimulatorProcess:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        environment.pop("SIMULATOR_PASSWORD", None)
        process = await asyncio.create_subprocess_exec(
            python,
            *command,
            *arguments,
            cwd=cwd,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first line matching `pattern` (a regular expression, searched)."""
        compiled = re.compile(pattern)
        checked = 0

        async def scan() -> re.Match[str]:
            nonlocal checked
            while True:
                for line in self.lines[checked:]:
                    checked += 1
                    found = compiled.search(line)
                    if found:
                        return found
                if self._reader.done():
                    raise AssertionError(
                        f"the simulator exited ({self.process.returncode}) without a line "
                        f"matching {pattern!r}; its output:\n{self.output}"
                    )
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no line matching {pattern!r} within {timeout}s; output so far:\n{self.output}"
            ) from None

    async def wait(self, timeout: float = 30.0) -> int:
        """The exit status, once the process has ended and its output is read."""
        try:
            status = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"the simulator did not exit within {timeout}s; output:\n{self.output}"
            ) from None
        await self._reader
        return status

    async def interrupt(self, timeout: float = 15.0) -> int:
        """Ctrl-C, as a user would press it; the exit status."""
        self.process.send_signal(signal.SIGINT)
        return await self.wait(timeout)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader
