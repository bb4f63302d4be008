"""AWS emulation for tests: no real credentials or configuration, and a `moto_server` process.

`moto_server` runs as a real HTTP endpoint that a test can stop to cause a genuine outage.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .ports import free_port, wait_for_port

MISSING_MOTO_SERVER = (
    "`moto_server` is required by the AWS tests and was not found next to the Python "
    "interpreter or on PATH: install it with `pip install 'moto[server]'` (part of the test extra)"
)


def isolate_from_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, no profile, region or config file: nothing can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "absent-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent-aws-credentials"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def find_moto_server() -> str:
    next_to_python = str(Path(sys.executable).parent)
    found = shutil.which("moto_server", path=next_to_python) or shutil.which("moto_server")
    if found is None:
        raise RuntimeError(MISSING_MOTO_SERVER)
    return found


class MotoServer:
    """`moto_server` on a free local port; `stop()` makes the endpoint really go away."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [find_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
