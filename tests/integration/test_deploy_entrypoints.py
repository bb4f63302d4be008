"""The container's entry commands, run outside a container exactly as the image and compose
declare them (command, environment, health check), against a Mosquitto started from the
compose stack's own docker/mosquitto.conf."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from scripts.deploy_files import compose_config, image_runtime, runtime_environment
from scripts.deploy_tools import REPO_ROOT
from tests.support.mosquitto import find_mosquitto
from tests.support.ports import free_port, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VENV_BIN = Path(sys.executable).parent
HEALTHCHECK = REPO_ROOT / "docker" / "healthcheck.py"
IMAGE_HEALTHCHECK = "/usr/local/lib/ocpp/healthcheck.py"
COMPOSE_BROKER_URL = "mqtt://mosquitto:1883"


@dataclass
class Broker:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto with docker/mosquitto.conf, its listener moved to a free loopback port."""
    port = free_port()
    config = (REPO_ROOT / "docker" / "mosquitto.conf").read_text()
    assert "listener 1883 0.0.0.0" in config
    workdir = tmp_path_factory.mktemp("mosquitto")
    (workdir / "mosquitto.conf").write_text(
        config.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    )
    log = (workdir / "mosquitto.log").open("ab")
    process = subprocess.Popen(
        [find_mosquitto(), "-c", str(workdir / "mosquitto.conf")], stdout=log, stderr=log
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
    except TimeoutError:
        process.kill()
        pytest.fail(
            f"mosquitto refused docker/mosquitto.conf:\n{(workdir / 'mosquitto.log').read_text()}"
        )
    yield Broker(f"mqtt://127.0.0.1:{port}", process)
    process.terminate()
    process.wait(timeout=10)


@dataclass
class Service:
    """One compose service's command, run on this machine with the container's environment."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))
    process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        executable = VENV_BIN / self.command[0]
        assert executable.is_file(), f"{self.command[0]}: no such console script in {VENV_BIN}"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(executable), *self.command[1:]],
            env=self.env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def container_environment(service: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    """The image's ENV, then the service's environment, with container paths and hosts mapped
    to this machine; PATH puts this virtualenv first, as the image puts /opt/venv/bin."""
    env = {**runtime_environment(image_runtime()), **service.get("environment", {})}
    env = {name: str(value) for name, value in env.items()}
    for name, value in env.items():
        if value == COMPOSE_BROKER_URL:
            env[name] = overrides["broker_url"]
    env.update({k: v for k, v in overrides.items() if k.isupper()})
    env["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
    env["HOME"] = os.environ.get("HOME", "/tmp")
    return env


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with the script at its repository path."""
    (healthcheck,) = [i.arguments for i in image_runtime() if i.keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command == ["python", IMAGE_HEALTHCHECK]
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, check=False
    )


def wait_until_healthy(env: dict[str, str], gateway: Service) -> None:
    deadline = time.monotonic() + 30
    while run_healthcheck(env).returncode != 0:
        assert gateway.process is not None
        if gateway.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the gateway never became healthy:\n{gateway.log()}")
        time.sleep(0.2)


def wait_for_log(service: Service, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in service.log():
        assert service.process is not None
        if service.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{service.name} never logged {text!r}:\n{service.log()}")
        time.sleep(0.1)


async def boot(url: str) -> tuple[Any, Any]:
    """Connect as a CP, boot, and return (the connection, the BootNotification answer)."""
    ws = await websockets.connect(url, subprotocols=[websockets.Subprotocol("ocpp2.0.1")])
    station = {"model": "ABC 123 XYZ", "vendorName": "Acme Electrical Systems"}
    await ws.send(
        json.dumps(
            [2, "boot-1", "BootNotification", {"chargingStation": station, "reason": "PowerUp"}]
        )
    )
    answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
    return ws, answer


async def test_image_commands_serve_a_charge_point_and_drain_on_sigterm(
    compose_broker: Broker, tmp_path: Path
) -> None:
    services = compose_config()["services"]
    registry = tmp_path / "things.txt"
    registry.write_text((REPO_ROOT / "config" / "things.txt").read_text())
    port = free_port()
    overrides = {
        "broker_url": compose_broker.url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_REGISTRY_FILE": str(registry),
        "GATEWAY_HOST": "127.0.0.1",
    }
    processor = Service(
        "processor",
        services["processor"]["command"],
        container_environment(services["processor"], overrides),
    )
    gateway = Service(
        "gateway",
        services["gateway"]["command"],
        container_environment(services["gateway"], overrides),
    )
    assert gateway.command == ["ocpp-gateway"]
    assert processor.command == ["ocpp-processor"]
    try:
        processor.start(tmp_path)
        wait_for_log(processor, "broker.connected")
        gateway.start(tmp_path)
        wait_until_healthy(gateway.env, gateway)

        ws, answer = await boot(f"ws://127.0.0.1:{port}/CP1")
        assert answer[:2] == [3, "boot-1"]
        assert answer[2]["status"] == "Accepted"

        stopped = asyncio.get_running_loop().run_in_executor(None, gateway.terminate)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
        assert await stopped == 0, gateway.log()

        after = run_healthcheck(gateway.env)
        assert after.returncode == 1
        assert "unreachable" in after.stdout
        assert processor.terminate() == 0, processor.log()
        # GATEWAY_LOG_FORMAT=json from the image: one JSON object per line, for CloudWatch.
        events = [json.loads(line)["event"] for line in gateway.log().splitlines()]
        assert "cp.connected" in events or any(e.startswith("cp.") for e in events), events
    finally:
        gateway.kill()
        processor.kill()
