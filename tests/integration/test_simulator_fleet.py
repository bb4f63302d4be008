"""Fleet mode against a real WebSocket central system: as a command (JSON summary, exit status)
and in-process (drops, reconnects, requests from the CSMS)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from simulator.backoff import RetryBackOff
from simulator.fleet.ids import expand_ids
from simulator.fleet.options import FleetPlan
from simulator.fleet.runner import FleetRun, run_fleet
from simulator.fleet.stats import Thresholds
from tests.support.echo_csms import EchoCsms
from tests.support.ports import free_port
from tests.support.simulator_process import REPO_ROOT, SimulatorProcess
from tests.support.waiting import until

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[SimulatorProcess]]


@pytest.fixture
async def simulator() -> AsyncIterator[Start]:
    started: list[SimulatorProcess] = []

    async def start(*arguments: str, **options: Any) -> SimulatorProcess:
        process = await SimulatorProcess.start(*arguments, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


def json_summary(process: SimulatorProcess) -> dict[str, Any]:
    """The JSON document on stdout (progress lines and logs go to stderr, mixed in here)."""
    text = process.output
    start = text.index("\n{") + 1 if not text.startswith("{") else 0
    summary: dict[str, Any] = json.loads(text[start : text.rindex("}") + 1])
    return summary


async def test_small_fleet_completes_with_zero_failed_calls(simulator: Start) -> None:
    async with EchoCsms(record=False) as csms:
        fleet = await simulator(
            "fleet", "--url", csms.url, "--count", "200", "--ramp", "400", "--mode", "closed",
            "--calls", "5", "--json", "--max-failed-calls", "0", "--min-connected", "200",
        )  # fmt: skip
        status = await fleet.wait(timeout=60)
    summary = json_summary(fleet)
    assert status == 0, fleet.output
    assert summary["passed"] is True
    assert summary["requested"] == 200
    assert summary["connected"] == 200
    assert summary["connect_errors"] == {}
    assert summary["boots_accepted"] == 200
    assert summary["calls_ok"] == 200 * 5  # --calls 5: five heartbeats each, the boot apart
    assert summary["calls_failed"] == 0
    assert summary["calls_per_s"] > 0
    latency = summary["latency"]
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert csms.calls_answered == 1200
    assert sum(csms.connections.values()) == 200


async def test_module_entry_point_prints_a_readable_summary(simulator: Start) -> None:
    async with EchoCsms(record=False) as csms:
        fleet = await simulator(
            "--url", csms.url, "--count", "20", "--id-prefix", "SITE-", "--rate", "50",
            "--calls", "3", "--progress-every", "0", "--ocpp", "1.6",
            command=("-m", "simulator.fleet"), cwd=REPO_ROOT,
        )  # fmt: skip
        assert await fleet.wait(timeout=60) == 0, fleet.output
    assert "fleet summary" in fleet.output
    assert "20 of 20 connected" in fleet.output
    assert "60 ok, 0 failed" in fleet.output  # three heartbeats each; boots apart
    assert set(csms.connections) == {f"SITE-{n:05d}" for n in range(1, 21)}


async def test_refusals_are_counted_by_cause_and_fail_the_threshold(simulator: Start) -> None:
    refused = {"LOAD00002": (1008, "Charge Point LOAD00002 not registered as an IoT Thing")}
    async with EchoCsms(http_status={"LOAD00001": 400}, close_on_connect=refused) as csms:
        fleet = await simulator(
            "fleet", "--url", csms.url, "--count", "10", "--mode", "closed", "--calls", "2",
            "--json", "--max-connect-errors", "0",
        )  # fmt: skip
        status = await fleet.wait(timeout=60)
    summary = json_summary(fleet)
    assert status == 1
    assert summary["connect_errors"] == {"close_1008": 1, "http_400": 1}
    assert summary["connected"] == 8
    assert summary["calls_failed"] == 0
    assert summary["threshold_failures"] == ["2 connect errors > --max-connect-errors 0"]
    assert "fleet.connect_error" in fleet.output  # the first error of each kind, in full
    assert "Charge Point LOAD00002 not registered as an IoT Thing" in fleet.output


async def test_nothing_listening_fails_with_refused_connections(simulator: Start) -> None:
    fleet = await simulator(
        "fleet", "--url", f"ws://127.0.0.1:{free_port()}", "--count", "5", "--calls", "1",
        "--json", "--progress-every", "0",
    )  # fmt: skip
    assert await fleet.wait(timeout=60) == 1
    summary = json_summary(fleet)
    assert summary["connect_errors"] == {"refused": 5}
    assert summary["threshold_failures"] == ["no charge point could connect"]


async def test_count_beyond_the_open_files_limit_is_refused_up_front(simulator: Start) -> None:
    fleet = await simulator("fleet", "--count", "5000000", "--url", "ws://127.0.0.1:9")
    assert await fleet.wait(timeout=60) == 2
    assert "--count 5,000,000 needs about 5,000,064 open files" in fleet.output


async def test_bad_arguments_exit_2(simulator: Start) -> None:
    fleet = await simulator("fleet", "--mode", "rate")
    assert await fleet.wait() == 2
    assert "--mode rate needs --rate" in fleet.output


def plan(url: str, count: int, **changes: Any) -> FleetPlan:
    values: dict[str, Any] = {
        "url": url,
        "cp_ids": expand_ids("LOAD{n:05d}", count),
        "ramp_per_s": 0.0,
        "mode": "closed",
        "progress_every": 0.0,
        "close_timeout": 1.0,
    }
    return FleetPlan(**{**values, **changes})


async def test_unanswered_calls_time_out_and_count_as_failed() -> None:
    async with EchoCsms(ignore_actions={"Heartbeat"}) as csms:
        summary = await run_fleet(
            plan(csms.url, 3, calls_per_cp=2, call_timeout=0.2, thresholds=Thresholds(0))
        )
    assert summary.boots_accepted == 3
    assert summary.calls_ok == 0
    assert summary.calls_failed_by_cause == {"timeout": 6}
    assert summary.threshold_failures == ("6 failed calls > --max-failed-calls 0",)


async def test_callerrors_count_as_failed_by_code() -> None:
    async with EchoCsms(error_actions={"Heartbeat": "InternalError"}) as csms:
        summary = await run_fleet(plan(csms.url, 2, calls_per_cp=3))
    assert summary.calls_failed_by_cause == {"callerror_InternalError": 6}
    assert summary.passed  # no threshold asked for


async def test_dropped_charge_points_reconnect_with_the_back_off() -> None:
    backoff = RetryBackOff(wait_minimum=0.05, random_range=0.0, repeat_times=0)
    async with EchoCsms() as csms:
        run = FleetRun(plan(csms.url, 20, mode="heartbeat", reconnect=backoff))
        running = asyncio.create_task(run.run())
        await until(lambda: run.stats.connected_now == 20, what="20 connected")
        for cp_id in ("LOAD00003", "LOAD00007", "LOAD00011"):
            await csms.drop(cp_id, 1012, "restarting")
        await until(lambda: run.stats.reconnects == 3, what="3 reconnects")
        await until(lambda: run.stats.connected_now == 20, what="20 connected again")
        run.stop.set()
        summary = await running
    assert summary.disconnects == {"close_1012": 3}
    assert summary.reconnects == 3
    assert summary.connected == 20
    assert summary.peak_connected == 20
    assert csms.connections["LOAD00003"] == 2
    # A reconnect is not a reboot: one BootNotification per charge point.
    assert len(csms.calls("LOAD00003", "BootNotification")) == 1


async def test_requests_from_the_csms_get_not_implemented() -> None:
    async with EchoCsms() as csms:
        run = FleetRun(plan(csms.url, 2, mode="heartbeat", heartbeat_interval=60.0))
        running = asyncio.create_task(run.run())
        await until(lambda: run.stats.connected_now == 2, what="2 connected")
        await csms.live["LOAD00001"].send('[2,"csms-1","Reset",{"type":"Immediate"}]')
        await until(
            lambda: any(frame[:2] == [4, "csms-1"] for _, frame in csms.frames),
            what="the answer to the Reset",
        )
        run.stop.set()
        summary = await running
    [answer] = [frame for _, frame in csms.frames if frame[:2] == [4, "csms-1"]]
    assert answer[2] == "NotImplemented"
    assert summary.csms_calls == 1


async def test_stop_ends_a_run_without_a_limit_with_a_summary() -> None:
    async with EchoCsms(heartbeat_interval=1) as csms:
        run = FleetRun(plan(csms.url, 5, mode="heartbeat"))
        running = asyncio.create_task(run.run())
        await until(lambda: run.stats.calls_ok >= 10, what="ten answered calls")
        run.stop.set()
        summary = await running
        await until(lambda: not csms.live, what="every connection closed")
    assert summary.connected == 5
    assert summary.calls_failed == 0
    assert summary.disconnects == {}  # closed by the fleet itself


async def test_boots_not_accepted_are_retried_and_counted() -> None:
    async with EchoCsms(boot_status="Pending", heartbeat_interval=1) as csms:
        run = FleetRun(plan(csms.url, 3, calls_per_cp=1))
        running = asyncio.create_task(run.run())
        await until(lambda: run.stats.boots_not_accepted >= 3, what="3 pending boots")
        csms.boot_status = "Accepted"
        summary = await running
    assert summary.boots_accepted == 3
    assert summary.boots_not_accepted >= 3
    assert summary.connected == 3
    assert summary.calls_failed == 0


async def test_garbage_from_the_csms_is_counted_not_fatal() -> None:
    async with EchoCsms() as csms:
        run = FleetRun(plan(csms.url, 1, mode="heartbeat", heartbeat_interval=60.0))
        running = asyncio.create_task(run.run())
        await until(lambda: run.stats.connected_now == 1, what="connected")
        await csms.live["LOAD00001"].send("not json")
        await csms.live["LOAD00001"].send('[3,"no-such-call",{}]')
        await until(lambda: run.stats.unexpected_frames == 2, what="two unexpected frames")
        run.stop.set()
        summary = await running
    assert summary.unexpected_frames == 2
    assert summary.disconnects == {}


async def test_ctrl_c_prints_the_summary_so_far(simulator: Start) -> None:
    async with EchoCsms(record=False, heartbeat_interval=1) as csms:
        fleet = await simulator(
            "fleet", "--url", csms.url, "--count", "10", "--progress-every", "0.2", "--json"
        )  # fmt: skip
        await fleet.wait_for_line(r"connected 10/10")
        assert await fleet.interrupt() == 0
    summary = json_summary(fleet)
    assert summary["connected"] == 10
    assert summary["calls_failed"] == 0
    assert "Traceback" not in fleet.output


async def test_echo_server_runs_as_a_process(simulator: Start) -> None:
    port = free_port()
    server = await SimulatorProcess.start(
        "-m", "tests.support.echo_csms", "--port", str(port), "--interval", "5",
        command=(), cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        await server.wait_for_line(f"echo CSMS listening on ws://127.0.0.1:{port}")
        fleet = await simulator(
            "fleet", "--url", f"ws://127.0.0.1:{port}", "--count", "10", "--mode", "closed",
            "--calls", "4", "--json",
        )  # fmt: skip
        assert await fleet.wait(timeout=60) == 0
        assert await server.interrupt() == 0
    finally:
        await server.kill()
    assert json.loads(server.lines[-1]) == {"connections": 10, "calls_answered": 50}
    assert json_summary(fleet)["calls_ok"] == 40  # the server also answered 10 boots


async def test_calls_counts_the_requested_calls_not_the_boot() -> None:
    """`--calls 50` for one charge point reports 50 calls: the BootNotification is a boot."""
    async with EchoCsms() as csms:
        summary = await run_fleet(plan(csms.url, 1, calls_per_cp=50))
    assert csms.calls_answered == 51
    assert summary.boots_accepted == 1
    assert summary.calls_ok == 50
    assert summary.calls_failed == 0
