"""The simulator against the real local stack (gateway, Mosquitto, processor), as users run it."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.support.mqtt import mqtt_peer
from tests.support.simulator_process import REPO_ROOT, SimulatorProcess
from tests.support.stack import LocalStack

pytestmark = pytest.mark.integration


async def test_documented_cp1_run_boots_and_heartbeats(stack: LocalStack) -> None:
    simulator = await SimulatorProcess.start(
        "--url", stack.ws_url, "--cp-id", "CP1", "--heartbeat-interval", "1", "--heartbeats", "1"
    )
    await simulator.wait_for_line(r'^INFO:ocpp:CP1: send \[2,"[^"]+","BootNotification",')
    await simulator.wait_for_line(
        r'^INFO:ocpp:CP1: receive message \[3,"[^"]+",\{.*"status":"Accepted"'
    )
    await simulator.wait_for_line(r"^INFO:root:CP1: connected to central system$")
    await simulator.wait_for_line(r"^INFO:root:CP1: heartbeat interval set to \d+$")
    await simulator.wait_for_line(r'^INFO:ocpp:CP1: send \[2,"[^"]+","Heartbeat",\{\}\]$')
    await simulator.wait_for_line(r'^INFO:ocpp:CP1: receive message \[3,"[^"]+",\{"currentTime":')
    assert await simulator.wait() == 0, simulator.output


async def test_unregistered_cp_prints_the_1008_line_and_fails(stack: LocalStack) -> None:
    simulator = await SimulatorProcess.start("--url", stack.ws_url, "--cp-id", "CP2")
    await simulator.wait_for_line(
        r"^ERROR:root:CP2: received 1008 \(policy violation\) Charge Point CP2 not registered "
        r"as an IoT Thing; then sent 1008 \(policy violation\) Charge Point CP2 not registered "
        r"as an IoT Thing$"
    )
    assert await simulator.wait() != 0


async def test_scenario_produces_the_expected_sequence_on_the_in_topic(stack: LocalStack) -> None:
    stack.register("SCENARIO1")
    async with mqtt_peer(stack.broker.url, "SCENARIO1/in") as watcher:
        simulator = await SimulatorProcess.start(
            "--url",
            stack.ws_url,
            "--cp-id",
            "SCENARIO1",
            "--scenario",
            "--heartbeats",
            "0",
            "--meter-interval",
            "0.2",
            "--meter-samples",
            "2",
        )
        assert await simulator.wait(timeout=60) == 0, simulator.output
        calls: list[tuple[str, str]] = []
        while not watcher.received.empty():
            frame = json.loads((await watcher.next()).payload)
            if frame[0] == 2:
                event = frame[3].get("eventType") or frame[3].get("connectorStatus") or ""
                calls.append((frame[2], event))
    actions = [action for action, _ in calls]
    assert actions[0] == "BootNotification"
    assert ("StatusNotification", "Available") in calls
    assert ("StatusNotification", "Occupied") in calls
    assert "Authorize" in actions
    events = [event for action, event in calls if action == "TransactionEvent"]
    assert events[0] == "Started"
    assert "Updated" in events
    assert events[-1] == "Ended"
    assert calls[-1] == ("StatusNotification", "Available")


async def test_small_fleet_completes_with_zero_failed_calls(stack: LocalStack) -> None:
    stack.register(*(f"FLEET{n:05d}" for n in range(1, 201)))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator.fleet",
        "--url",
        stack.ws_url,
        "--count",
        "200",
        "--id-prefix",
        "FLEET",
        "--ramp",
        "0",
        "--mode",
        "closed",
        "--calls",
        "20",
        "--json",
        "--max-failed-calls",
        "0",
        "--max-connect-errors",
        "0",
        "--progress-every",
        "0",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    summary = json.loads(stdout)
    assert process.returncode == 0, stderr.decode()
    assert summary["connected"] == 200
    assert summary["calls_failed"] == 0
    assert summary["calls_ok"] >= 200 * 20
