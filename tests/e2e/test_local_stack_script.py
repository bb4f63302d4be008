"""`make run` (scripts/local-stack.sh) as a user meets it: its own broker, also when the MQTT
port is taken, the status page on a free port when its own is taken, `ready:` only once the stack
answers, the commands it prints working as printed, every line named after its process, and a
clean Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.simulator_process import REPO_ROOT, SimulatorProcess

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "scripts" / "local-stack.sh"
PREFIX = re.compile(r"^(local-stack: |(mosquitto|processor|gateway) *\| )")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else already listens on, as Debian's Mosquitto does on 1883."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


async def start_stack(state_dir: Path, **settings: str) -> SimulatorProcess:
    """`make run` as a new terminal runs it, with `settings` in its environment."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GATEWAY_", "PROCESSOR_"))
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(SCRIPT),
        cwd=REPO_ROOT,
        env={**environment, "STATE_DIR": str(state_dir), **settings},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return SimulatorProcess(process)


async def hang_up(stack: SimulatorProcess) -> None:
    if stack.process.returncode is None:
        # As a closing terminal would: the script stops its processes (a kill would leave them).
        stack.process.send_signal(signal.SIGHUP)
        await stack.wait(timeout=60)


@pytest.fixture
async def local_stack(taken_port: int, tmp_path: Path) -> AsyncIterator[SimulatorProcess]:
    stack = await start_stack(
        tmp_path / "run",
        MQTT_PORT=str(taken_port),
        PROCESSOR_HTTP_PORT=str(taken_port),
        GATEWAY_PORT=str(free_port()),
    )
    yield stack
    await hang_up(stack)


def printed_command(stack: SimulatorProcess, program: str) -> str:
    """The command line the script printed for `program`, as a user would copy it."""
    for line in stack.lines:
        if line.startswith("local-stack: ") and f"{program} " in line:
            return line.removeprefix("local-stack: ").strip()
    raise AssertionError(f"no {program} command printed:\n{stack.output}")


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"]


async def test_make_run_uses_its_own_broker_and_its_printed_commands_work(
    local_stack: SimulatorProcess, taken_port: int, tmp_path: Path
) -> None:
    moved = await local_stack.wait_for_line(
        rf"another MQTT broker already listens on 127\.0\.0\.1:{taken_port}; "
        r"this stack runs its own on port (\d+)",
        timeout=60,
    )
    mqtt_port = moved.group(1)
    page_moved = await local_stack.wait_for_line(
        rf"port {taken_port} is already in use; the status page is on port (\d+)", timeout=60
    )
    ready = await local_stack.wait_for_line(
        r"^local-stack: ready: status page on (http://localhost:(\d+)); in another terminal",
        timeout=60,
    )
    assert ready.group(2) == page_moved.group(1)
    status, content_type = await asyncio.to_thread(http_get, ready.group(1))
    assert (status, content_type.split(";")[0]) == (200, "text/html")
    await local_stack.wait_for_line(r"^local-stack: +mosquitto_sub ")  # the last line printed
    before_ready = local_stack.output.split("local-stack: ready:")[0]
    assert "gateway.listening" in before_ready
    assert "broker.connected" in before_ready  # the processor subscribed
    config = (tmp_path / "run" / "mosquitto.conf").read_text()
    assert f"listener {mqtt_port} 127.0.0.1" in config
    assert "set_tcp_nodelay true" in config
    assert "persistence true" in config
    assert f"persistence_location {tmp_path / 'run'}/" in config

    watch = printed_command(local_stack, "mosquitto_sub")
    assert shlex.split(watch)[:3] == ["mosquitto_sub", "-p", mqtt_port]
    simulate = printed_command(local_stack, "simulator/simulate.py")
    cp = SimulatorProcess(
        await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f"{simulate} --heartbeats 1",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    )
    assert await cp.wait(timeout=60) == 0, cp.output
    assert "INFO:root:CP1: connected to central system" in cp.output

    assert await local_stack.interrupt(timeout=30) == 0, local_stack.output
    assert local_stack.lines[-1] == "local-stack: stopped"
    unnamed = [line for line in local_stack.lines if line and not PREFIX.match(line)]
    assert unnamed == []
    assert "broker.unavailable" not in local_stack.output
    assert "gateway.stopped" in local_stack.output
    assert "processor.stopped" in local_stack.output


async def test_a_second_stack_in_the_same_checkout_keeps_its_broker_state_apart(
    tmp_path: Path,
) -> None:
    """`GATEWAY_PORT=8090 make run` next to a running `make run`: two brokers saving to one
    persistence file crash each other, so the second one gets a state directory of its own."""
    state_dir = tmp_path / "run"
    second_port = free_port()
    first = await start_stack(state_dir, GATEWAY_PORT=str(free_port()), PROCESSOR_HTTP_PORT="0")
    second = None
    try:
        await first.wait_for_line(r"^local-stack: ready:", timeout=60)
        second = await start_stack(
            state_dir, GATEWAY_PORT=str(second_port), PROCESSOR_HTTP_PORT="0"
        )
        shared = re.escape(str(state_dir))
        await second.wait_for_line(
            rf"^local-stack: another local stack is using {shared}; "
            rf"this one keeps its broker's state in {shared}/port-{second_port}$",
            timeout=60,
        )
        await second.wait_for_line(r"^local-stack: ready:", timeout=60)
        config = (state_dir / f"port-{second_port}" / "mosquitto.conf").read_text()
        assert f"persistence_location {state_dir}/port-{second_port}/" in config
        assert f"persistence_location {state_dir}/\n" in (state_dir / "mosquitto.conf").read_text()
    finally:
        if second is not None:
            await hang_up(second)
        await hang_up(first)
    assert first.lines[-1] == "local-stack: stopped", first.output
