"""The file registry in a running gateway, edited with the `ocpp-things` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.server import Gateway
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer

pytestmark = pytest.mark.integration


def ocpp_things(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.registry.things_cli", *argv],
        capture_output=True,
        text=True,
        check=False,
    )


async def close_code(url: str, cp_id: str, csms: MqttPeer) -> int | None:
    """None when the gateway bridges the charge point's first frame, else its close code."""
    async with connect(url, subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        closed = asyncio.create_task(ws.wait_closed())
        bridged = asyncio.create_task(csms.next())
        with contextlib.suppress(ConnectionClosed):
            await ws.send('[2,"1","Heartbeat",{}]')
        done, pending = await asyncio.wait({closed, bridged}, return_when=FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if bridged in done:
            assert bridged.result().topic == f"{cp_id}/in"
            return None
        return ws.close_code


@pytest.fixture
async def file_gateway(broker: MosquittoProcess, tmp_path: Path) -> AsyncIterator[Gateway]:
    things = tmp_path / "things.txt"
    things.write_text("# test depot\nCP1\n")
    async with running_gateway(
        broker.url, registry="file", registry_file=things, registry_file_poll_interval=0.05
    ) as gateway:
        yield gateway


async def test_a_charge_point_added_with_ocpp_things_connects_without_restart(
    file_gateway: Gateway, csms: MqttPeer
) -> None:
    things = str(file_gateway.settings.registry_file)
    assert await close_code(ws_url(file_gateway, "CP2"), "CP2", csms) == 1008
    result = ocpp_things("--file", things, "add", "CP2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"thingName": "CP2"}
    deadline = time.monotonic() + 10
    while await close_code(ws_url(file_gateway, "CP2"), "CP2", csms) == 1008:
        assert time.monotonic() < deadline, "the gateway did not pick up CP2 from the file"


async def test_a_removed_charge_point_is_refused_on_its_next_connection(
    file_gateway: Gateway, csms: MqttPeer
) -> None:
    things = str(file_gateway.settings.registry_file)
    assert await close_code(ws_url(file_gateway, "CP1"), "CP1", csms) is None
    assert ocpp_things("--file", things, "remove", "CP1").returncode == 0
    deadline = time.monotonic() + 10
    while await close_code(ws_url(file_gateway, "CP1"), "CP1", csms) is None:
        assert time.monotonic() < deadline, "the gateway did not drop CP1"


def test_the_local_stack_registers_cp1_and_not_cp2() -> None:
    result = ocpp_things("--file", str(Path(__file__).parents[2] / "config/things.txt"), "list")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"things": [{"thingName": "CP1"}]}
