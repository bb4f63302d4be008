"""A real Mosquitto broker per test session.

Uses testcontainers' Mosquitto image where a Docker engine answers, otherwise the `mosquitto`
binary from the Debian package with its own configuration on a free port. The local-process
broker can be stopped, started and restarted by tests; it never touches the system broker.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port, wait_for_port

MISSING_BINARY = (
    "the `mosquitto` binary is required by the integration tests and was not found on PATH "
    "or in /usr/sbin: install it with `apt-get install -y mosquitto` (make test does this)"
)


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError(MISSING_BINARY)
    return found


def docker_engine_available() -> bool:
    try:
        # By name: the repository's own docker/ folder shadows the library for type checkers.
        docker = importlib.import_module("docker")
        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@dataclass
class MosquittoProcess:
    """A Mosquitto process with its own config; `extra_config` lines are appended."""

    extra_config: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mosquitto-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        config = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",
            *self.extra_config,
        ]
        if os.geteuid() == 0:
            # As root, Mosquitto switches to the user `mosquitto`, which cannot write the
            # (root's, private) working folder: persistence would fail.
            lines.append("user root")
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        binary = find_mosquitto()
        config = self.write_config()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.host, self.port, timeout=10)
        except TimeoutError as exc:
            raise RuntimeError(
                f"mosquitto did not start on port {self.port}: {self.log_path.read_text()}"
            ) from exc

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        # Wait until the port is really free so a restart can bind it again.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                wait_for_port(self.host, self.port, timeout=0.05)
            except TimeoutError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()


class MosquittoContainer:
    """testcontainers' Mosquitto, used for the session broker where a Docker engine answers.

    It cannot be stopped and started again in place; tests that restart the broker use a
    `MosquittoProcess` of their own.
    """

    def __init__(self) -> None:
        from testcontainers.community.mqtt import MosquittoContainer as Container

        self._container = Container()
        self._container.start()
        self.host = self._container.get_container_host_ip()
        self.port = int(self._container.get_exposed_port(Container.MQTT_PORT))

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        self._container.stop()


def start_session_broker() -> MosquittoProcess | MosquittoContainer:
    """testcontainers' Mosquitto where a Docker engine answers, else the local binary."""
    if docker_engine_available():
        return MosquittoContainer()
    return start_broker()


def start_broker(extra_config: list[str] | None = None) -> MosquittoProcess:
    broker = MosquittoProcess(extra_config=list(extra_config or []))
    broker.start()
    return broker
