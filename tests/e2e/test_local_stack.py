"""The local stack end to end: an OCPP charge point (the `ocpp` library) through gateway,
Mosquitto and processor, in OCPP 2.0.1 and 1.6."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16.enums import RegistrationStatus as RegistrationStatus16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect

from tests.support.mqtt import mqtt_peer
from tests.support.stack import LocalStack

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(charge_point: ChargePoint16 | ChargePoint201) -> AsyncIterator[None]:
    task = asyncio.create_task(charge_point.start())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def test_ocpp201_boot_heartbeat_and_state(stack: LocalStack) -> None:
    async with (
        mqtt_peer(stack.broker.url, "CP1/state") as watcher,
        connect(f"{stack.ws_url}/CP1", subprotocols=["ocpp2.0.1"]) as ws,
    ):
        cp = ChargePoint201("CP1", ws)
        async with running(cp):
            boot = await cp.call(
                call201.BootNotification(
                    charging_station={
                        "model": "ABC 123 XYZ",
                        "vendor_name": "Acme Electrical Systems",
                        "serial_number": "CP1234567890A01",
                    },
                    reason="PowerUp",
                )
            )
            assert boot.status == "Accepted"
            assert boot.interval == 10
            assert boot.current_time
            heartbeat = await cp.call(call201.Heartbeat())
            assert heartbeat.current_time
        state = json.loads((await watcher.next(timeout=10)).payload)
        while "ABC 123 XYZ" not in json.dumps(state):
            state = json.loads((await watcher.next(timeout=10)).payload)


async def test_ocpp16_boot_and_heartbeat(stack: LocalStack) -> None:
    async with connect(f"{stack.ws_url}/CP1", subprotocols=["ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        cp = ChargePoint16("CP1", ws)
        async with running(cp):
            boot = await cp.call(
                call16.BootNotification(
                    charge_point_model="ABC 123 XYZ", charge_point_vendor="Acme"
                )
            )
            assert boot.status == RegistrationStatus16.accepted
            assert (await cp.call(call16.Heartbeat())).current_time


async def test_registering_a_thing_lets_it_connect_without_restart(stack: LocalStack) -> None:
    async with connect(f"{stack.ws_url}/CP7", subprotocols=["ocpp2.0.1"]) as ws:
        await ws.wait_closed()
        assert ws.close_code == 1008
    stack.register("CP7")
    async with connect(f"{stack.ws_url}/CP7", subprotocols=["ocpp2.0.1"]) as ws:
        cp = ChargePoint201("CP7", ws)
        async with running(cp):
            assert (await cp.call(call201.Heartbeat())).current_time
