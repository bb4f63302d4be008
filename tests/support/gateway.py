"""Start the gateway for tests: in-process (fast) or as a subprocess (signals, replicas)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.cli import build_gateway
from gateway.server import Gateway
from gateway.settings import Settings

from .ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_settings(broker_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "mqtt_url": broker_url,
        "registry": "static",
        "registry_ids": ["CP1", "CP2", "CP-1"],
        "broker_grace": 3.0,
        "close_timeout": 2.0,
        "shutdown_timeout": 5.0,
        "ping_interval": None,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running_gateway(broker_url: str, **overrides: Any) -> AsyncIterator[Gateway]:
    gateway = build_gateway(test_settings(broker_url, **overrides))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def ws_url(gateway: Gateway, cp_id: str = "CP1") -> str:
    return f"ws://127.0.0.1:{gateway.port}{gateway.settings.path_prefix}/{cp_id}"


class PortTaken(Exception):
    """The gateway's port was taken between choosing it and binding it."""


class GatewayProcess:
    """`python -m gateway` in a subprocess, configured through its environment."""

    def __init__(self, broker_url: str, *, open_files: int | None = None, **env: str) -> None:
        """`open_files` lowers the process's RLIMIT_NOFILE (soft and hard) when given."""
        self.port = free_port()
        self.open_files = open_files
        self.log_path = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
        self.env = {
            **os.environ,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_MQTT_URL": broker_url,
            "GATEWAY_REGISTRY": "static",
            "GATEWAY_REGISTRY_IDS": "CP1,CP2",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_PING_INTERVAL": "5",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, cp_id: str = "CP1") -> str:
        return f"ws://127.0.0.1:{self.port}/{cp_id}"

    def start(self, timeout: float = 15.0) -> None:
        """Start and wait until ready.

        The port was free when chosen, but until the gateway binds it any process's outgoing
        connection may take it as its ephemeral port: then start again on another free port.
        """
        for _ in range(3):
            try:
                self._start_once(timeout)
                return
            except PortTaken:
                self.port = free_port()
                self.env["GATEWAY_PORT"] = str(self.port)
        self._start_once(timeout)

    def _start_once(self, timeout: float) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limit_open_files if self.open_files is not None else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if '"gateway.cannot_listen"' in self.log():
                    raise PortTaken(self.port)
                raise RuntimeError(f"the gateway exited at start:\n{self.log()}")
            if self.health()[0] == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not become ready in {timeout}s:\n{self.log()}")

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError:
            return 0, {}

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
