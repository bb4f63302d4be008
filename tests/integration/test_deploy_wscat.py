"""The README's manual session with wscat, typed into a real terminal (tmux) against the local
stack: connected and answered, replaced by a second connection (1000), refused (1008)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.deploy_tools import find_tool
from tests.support.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BOOT = (
    '[2,"boot-1","BootNotification",{"chargingStation":{"model":"ABC 123 XYZ",'
    '"vendorName":"Acme Electrical Systems"},"reason":"PowerUp"}]'
)
SCREEN_WAIT_SECONDS = 15.0


class Terminal:
    """A tmux server of this test's own; each window runs one command, kept after it exits."""

    def __init__(self, tmux: Path, socket_name: str) -> None:
        self.tmux = tmux
        self.socket_name = socket_name

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.tmux), "-L", self.socket_name, *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def start(self) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", "220", "-y", "50")
        # Keep a window's last screen when wscat exits, to read its closing line.
        self.run("set-option", "-g", "remain-on-exit", "on")

    def open(self, name: str, command: list[str]) -> None:
        self.run("new-window", "-d", "-t", "main", "-n", name, shlex.join(command))

    def type(self, name: str, text: str) -> None:
        self.run("send-keys", "-t", f"main:{name}", "-l", text)
        self.run("send-keys", "-t", f"main:{name}", "Enter")

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-J", "-t", f"main:{name}", "-S", "-200")

    def wait_for(self, name: str, text: str) -> str:
        deadline = time.monotonic() + SCREEN_WAIT_SECONDS
        while True:
            screen = self.screen(name)
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in window {name}:\n{screen}")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(
            [str(self.tmux), "-L", self.socket_name, "kill-server"],
            capture_output=True,
            check=False,
        )


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(find_tool("tmux"), f"wscat-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    term.start()
    yield term
    term.stop()


def wscat(stack: LocalStack, cp_id: str) -> list[str]:
    return [str(find_tool("wscat")), "-c", f"{stack.ws_url}/{cp_id}", "-s", "ocpp2.0.1"]


def test_connected_charge_point_is_answered(stack: LocalStack, terminal: Terminal) -> None:
    terminal.open("cp1", wscat(stack, "CP1"))
    terminal.wait_for("cp1", "Connected (press CTRL+C to quit)")
    terminal.type("cp1", BOOT)
    screen = terminal.wait_for("cp1", '< [3,"boot-1",{')
    assert '"status":"Accepted"' in screen.replace(" ", "")


def test_second_connection_replaces_the_first_with_1000(
    stack: LocalStack, terminal: Terminal
) -> None:
    terminal.open("first", wscat(stack, "CP1"))
    terminal.wait_for("first", "Connected (press CTRL+C to quit)")
    terminal.open("second", wscat(stack, "CP1"))
    terminal.wait_for("second", "Connected (press CTRL+C to quit)")
    terminal.wait_for("first", 'Disconnected (code: 1000, reason: "")')
    assert "Disconnected" not in terminal.screen("second")


def test_unregistered_charge_point_is_refused_with_1008(
    stack: LocalStack, terminal: Terminal
) -> None:
    terminal.open("cpx", wscat(stack, "CPX"))
    screen = terminal.wait_for("cpx", "Disconnected (code: 1008")
    assert "Connected (press CTRL+C to quit)" in screen
    assert (
        'Disconnected (code: 1008, reason: "Charge Point CPX not registered as an IoT Thing")'
        in (screen)
    )
