"""The single charge point as users run it: `cd simulator && python simulate.py ...`, a real
subprocess, against a real WebSocket central system."""

from __future__ import annotations

import re
import sys
import venv
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.echo_csms import EchoCsms
from tests.support.ports import free_port
from tests.support.simulator_process import REPO_ROOT, SimulatorProcess
from tests.support.waiting import until

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[SimulatorProcess]]

SEED_BOOT_PAYLOAD = (
    '{"chargingStation":{"model":"ABC 123 XYZ","vendorName":"Acme Electrical Systems",'
    '"firmwareVersion":"10.9.8.ABC","serialNumber":"CP1234567890A01",'
    '"modem":{"iccid":"891004234814455936F","imsi":"310410123456789"}},"reason":"PowerUp"}'
)
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00"
REFUSAL_LINE = (
    "ERROR:root:CP2: received 1008 (policy violation) Charge Point CP2 not registered as an "
    "IoT Thing; then sent 1008 (policy violation) Charge Point CP2 not registered as an IoT Thing"
)


@pytest.fixture
async def simulator() -> AsyncIterator[Start]:
    """Start `simulate.py` subprocesses; any still running at the end are killed."""
    started: list[SimulatorProcess] = []

    async def start(*arguments: str, **options: object) -> SimulatorProcess:
        process = await SimulatorProcess.start(*arguments, **options)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


def assert_no_traceback(process: SimulatorProcess) -> None:
    assert "Traceback" not in process.output, process.output


async def test_documented_run_logs_the_lines_users_know(simulator: Start) -> None:
    async with EchoCsms() as csms:
        cp = await simulator("--url", csms.url, "--cp-id", "CP1")
        # The Heartbeat's answer: only a time, where the BootNotification's has more.
        await cp.wait_for_line(
            r'^INFO:ocpp:CP1: receive message \[3,"[^"]+",\{"currentTime":"[^"]+"\}\]$'
        )
        status = await cp.interrupt()

    assert status == 0
    assert_no_traceback(cp)
    expected = [
        rf'INFO:ocpp:CP1: send \[2,"(?P<boot>{UUID})","BootNotification",'
        + re.escape(SEED_BOOT_PAYLOAD)
        + r"\]",
        rf'INFO:ocpp:CP1: receive message \[3,"(?P<boot>{UUID})",'
        rf'\{{"currentTime":"{TIME}","interval":10,"status":"Accepted"\}}\]',
        r"INFO:root:CP1: connected to central system",
        r"INFO:root:CP1: heartbeat interval set to 10",
        rf'INFO:ocpp:CP1: send \[2,"(?P<beat>{UUID})","Heartbeat",\{{\}}\]',
        rf'INFO:ocpp:CP1: receive message \[3,"(?P<beat>{UUID})",\{{"currentTime":"{TIME}"\}}\]',
    ]
    assert len(cp.lines) == len(expected), cp.output
    ids: dict[str, str] = {}
    for line, pattern in zip(cp.lines, expected, strict=True):
        found = re.fullmatch(pattern, line)
        assert found, f"{line!r} does not match {pattern!r}"
        for name, value in found.groupdict().items():
            assert ids.setdefault(name, value) == value, "the answer must carry the call's id"
    assert csms.actions("CP1") == ["BootNotification", "Heartbeat"]


async def test_identity_options_reach_the_boot_notification(simulator: Start) -> None:
    async with EchoCsms() as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--cp-serial", "SN-42", "--cp-model", "Wallbox",
            "--cp-version", "2.0.0", "--cp-vendor", "Example", "--heartbeats", "1",
        )  # fmt: skip
        assert await cp.wait() == 0
    [boot] = csms.calls("CP1", "BootNotification")
    assert boot["chargingStation"] == {
        "model": "Wallbox",
        "vendorName": "Example",
        "firmwareVersion": "2.0.0",
        "serialNumber": "SN-42",
        "modem": {"iccid": "891004234814455936F", "imsi": "310410123456789"},
    }


async def test_unregistered_charge_point_is_refused_as_users_see_it(simulator: Start) -> None:
    refusal = (1008, "Charge Point CP2 not registered as an IoT Thing")
    async with EchoCsms(close_on_connect={"CP2": refusal}) as csms:
        cp = await simulator("--url", csms.url, "--cp-id", "CP2")
        status = await cp.wait()
    assert status == 1
    assert len(cp.lines) == 2, cp.output
    assert re.fullmatch(
        rf'INFO:ocpp:CP2: send \[2,"{UUID}","BootNotification",'
        + re.escape(SEED_BOOT_PAYLOAD)
        + r"\]",
        cp.lines[0],
    )
    assert cp.lines[1] == REFUSAL_LINE


async def test_http_refusal_before_the_upgrade_is_a_clear_line(simulator: Start) -> None:
    async with EchoCsms(http_status={"BAD": 400}) as csms:
        cp = await simulator("--url", csms.url, "--cp-id", "BAD")
        status = await cp.wait()
    assert status == 1
    assert cp.lines == [
        "ERROR:root:BAD: server rejected WebSocket connection: HTTP 400 (Bad Request): refused BAD"
    ]


async def test_nothing_listening_is_a_clear_line(simulator: Start) -> None:
    port = free_port()
    cp = await simulator("--url", f"ws://127.0.0.1:{port}", "--cp-id", "CP1")
    assert await cp.wait() == 1
    assert cp.lines == [
        f"ERROR:root:CP1: cannot connect to ws://127.0.0.1:{port}/CP1: connection refused "
        "(is the gateway running?)"
    ]


async def test_bad_arguments_exit_2_with_the_reason(simulator: Start) -> None:
    cp = await simulator("--url", "http://localhost:8080", "--cp-id", "CP1")
    assert await cp.wait() == 2
    assert cp.lines[-1].endswith(
        "error: --url must look like ws://host:port or wss://host:port[/path], "
        "not 'http://localhost:8080'"
    )


async def test_reconnect_redials_after_a_drop_without_booting_again(simulator: Start) -> None:
    async with EchoCsms() as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--reconnect",
            "--retry-wait-minimum", "0.1", "--retry-random-range", "0",
        )  # fmt: skip
        await until(lambda: len(csms.calls("CP1", "Heartbeat")) == 1, what="the first heartbeat")
        await csms.drop("CP1", 1012, "restarting")
        await cp.wait_for_line(
            r"^ERROR:root:CP1: received 1012 \(service restart\) restarting; "
            r"then sent 1012 \(service restart\) restarting$"
        )
        await cp.wait_for_line(r"^INFO:root:CP1: reconnecting in 0\.1 s \(attempt 1\)$")
        await cp.wait_for_line(r"^INFO:root:CP1: reconnected to central system$")
        await until(lambda: len(csms.calls("CP1", "Heartbeat")) >= 2, what="a second heartbeat")
        assert csms.connections["CP1"] == 2
        assert await cp.interrupt() == 0
    # OCPP-J: a reconnect is not a reboot, so no second BootNotification.
    assert len(csms.calls("CP1", "BootNotification")) == 1
    assert_no_traceback(cp)


async def test_reconnect_backs_off_while_refused_then_boots(simulator: Start) -> None:
    async with EchoCsms(http_status={"CP1": 503}) as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--reconnect", "--retry-wait-minimum", "0.05",
            "--retry-random-range", "0", "--retry-repeat-times", "2",
        )  # fmt: skip
        await cp.wait_for_line(r"attempt 4\)$")
        csms.http_status.clear()
        await cp.wait_for_line("connected to central system")
        assert await cp.interrupt() == 0
    delays = re.findall(r"reconnecting in ([\d.]+) s \(attempt (\d)\)", cp.output)
    assert delays[:4] == [("0.05", "1"), ("0.1", "2"), ("0.2", "3"), ("0.2", "4")]
    assert (
        "ERROR:root:CP1: server rejected WebSocket connection: HTTP 503 (Service Unavailable): "
        "refused CP1; the gateway is not ready or at capacity; try again later"
    ) in cp.lines
    assert csms.requests["CP1"] >= 5


async def test_runs_as_a_module_and_stops_after_the_heartbeats_asked_for(
    simulator: Start,
) -> None:
    async with EchoCsms(heartbeat_interval=1) as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--heartbeats", "2",
            command=("-m", "simulator"), cwd=REPO_ROOT,
        )  # fmt: skip
        assert await cp.wait() == 0
    assert csms.actions("CP1") == ["BootNotification", "Heartbeat", "Heartbeat"]


async def test_script_works_from_its_directory_without_the_package_installed(
    simulator: Start,
) -> None:
    hide_installed_package = (
        "import runpy, sys;"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)];"
        "sys.path[:] = [p for p in sys.path if '__editable__' not in p];"
        "sys.argv = ['simulate.py', *sys.argv[1:]];"
        "runpy.run_path('simulate.py', run_name='__main__')"
    )
    async with EchoCsms() as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--heartbeats", "1",
            command=("-c", hide_installed_package),
        )  # fmt: skip
        assert await cp.wait() == 0, cp.output
    assert csms.actions("CP1") == ["BootNotification", "Heartbeat"]


async def test_help_names_the_documented_options(simulator: Start) -> None:
    cp = await simulator("--help")
    assert await cp.wait() == 0
    for option in ("--url", "--cp-id", "--cp-serial", "--cp-model", "--cp-version", "--cp-vendor"):
        assert option in cp.output
    assert sys.executable  # the same interpreter runs the script


def bare_python(tmp_path: Path) -> Path:
    """An interpreter without the project's libraries, like a fresh shell's `python3`."""
    venv.create(tmp_path / "bare", with_pip=False, symlinks=True)
    return tmp_path / "bare" / "bin" / "python"


@pytest.mark.skipif(
    not (REPO_ROOT / ".venv" / "bin" / "python").is_file(), reason="needs the checkout's .venv"
)
async def test_script_run_by_a_bare_python_uses_the_checkout_venv(tmp_path: Path) -> None:
    async with EchoCsms() as csms:
        cp = await SimulatorProcess.start(
            "--url", csms.url, "--cp-id", "CP1", "--heartbeats", "1",
            python=str(bare_python(tmp_path)),
        )  # fmt: skip
        assert await cp.wait() == 0, cp.output
    assert csms.actions("CP1") == ["BootNotification", "Heartbeat"]


async def test_script_without_any_usable_python_says_what_to_run(tmp_path: Path) -> None:
    cp = await SimulatorProcess.start(
        "--cp-id", "CP1", python=str(bare_python(tmp_path)), env={"OCPP_SIMULATE_REEXEC": "1"}
    )
    assert await cp.wait() == 2
    assert "the Python package 'websockets' is missing; run `make run` or `make install`" in (
        cp.output
    )
