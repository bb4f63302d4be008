"""Broker restarts and outages, and shutting the gateway down with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.server import Gateway
from tests.support.gateway import GatewayProcess, running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import mqtt_peer
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def test_broker_restart_within_grace_keeps_the_session(
    private_broker: MosquittoProcess,
) -> None:
    async with running_gateway(private_broker.url, broker_grace=8.0) as gw:
        ws = await connect(ws_url(gw), subprotocols=["ocpp2.0.1"])
        async with mqtt_peer(private_broker.url, "+/in") as csms:
            await ws.send('[2,"before","Heartbeat",{}]')
            await csms.next()
        await asyncio.to_thread(private_broker.restart)
        # Sent while the broker is (re)starting: held and delivered after the reconnect.
        await ws.send('[2,"during","Heartbeat",{}]')
        async with mqtt_peer(private_broker.url, "+/in") as csms:
            await ws.send('[2,"after","Heartbeat",{}]')
            # "during" may reach the broker before this peer subscribes; "after" must arrive.
            while (await csms.next(timeout=15)).payload != b'[2,"after","Heartbeat",{}]':
                pass
            await csms.publish("CP1/out", '[3,"after",{}]')
            assert await asyncio.wait_for(ws.recv(), 10) == '[3,"after",{}]'
        assert ws.close_code is None
        await ws.close()
        metrics = gw.metrics.render().decode()
        assert "ocpp_gateway_link_reconnects_total 1.0" in metrics


async def test_a_stalled_broker_holds_the_cp_back_counts_it_and_loses_nothing(
    private_broker: MosquittoProcess,
) -> None:
    async with running_gateway(private_broker.url, backpressure_seconds=0.3) as gw:
        ws = await connect(ws_url(gw), subprotocols=["ocpp2.0.1"])
        async with mqtt_peer(private_broker.url, "+/in") as csms:
            await ws.send('[2,"first","Heartbeat",{}]')
            await csms.next()
            assert held_back(gw) == 0
            assert private_broker.process is not None
            private_broker.process.send_signal(signal.SIGSTOP)  # accepts, never acknowledges
            try:
                await ws.send('[2,"stalled","Heartbeat",{}]')
                await until(lambda: held_back(gw) == 1, what="the CP to count as held back")
            finally:
                private_broker.process.send_signal(signal.SIGCONT)
            assert (await csms.next(timeout=10)).payload == b'[2,"stalled","Heartbeat",{}]'
            await until(lambda: held_back(gw) == 0, what="the CP to be read again")
        assert ws.close_code is None
        await ws.close()
        assert "ocpp_gateway_backpressure_total 1.0" in gw.metrics.render().decode()


def held_back(gw: Gateway) -> float:
    line = next(
        line
        for line in gw.metrics.render().decode().splitlines()
        if line.startswith("ocpp_gateway_cps_held_back ")
    )
    return float(line.split()[1])


async def test_broker_gone_past_grace_closes_1011_then_recovers(
    private_broker: MosquittoProcess,
) -> None:
    async with running_gateway(private_broker.url, broker_grace=1.0) as gw:
        ws = await connect(ws_url(gw), subprotocols=["ocpp2.0.1"])
        async with mqtt_peer(private_broker.url, "+/in") as csms:
            await ws.send('[2,"bridged","Heartbeat",{}]')
            await csms.next()
        await asyncio.to_thread(private_broker.stop)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 15)
        assert ws.close_code == 1011
        await until(lambda: not gw.ready, what="readiness to drop")
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(gw), subprotocols=["ocpp2.0.1"])
        assert refused.value.response.status_code == 503
        await asyncio.to_thread(private_broker.start)
        await until(lambda: gw.ready, timeout=20, what="readiness to return")
        async with (
            mqtt_peer(private_broker.url, "+/in") as csms,
            connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as again,
        ):
            await again.send('[2,"back","Heartbeat",{}]')
            assert (await csms.next(timeout=10)).payload == b'[2,"back","Heartbeat",{}]'
        metrics = gw.metrics.render().decode()
        assert 'ocpp_gateway_link_lost_total{reason="broker_unavailable"} 1.0' in metrics
        assert 'ocpp_gateway_closes_total{code="1011"} 1.0' in metrics


async def test_sigterm_closes_cps_with_1012_and_exits_cleanly(broker: MosquittoProcess) -> None:
    process = GatewayProcess(broker.url, GATEWAY_SHUTDOWN_TIMEOUT="5")
    process.start()
    try:
        sockets = [
            await connect(process.url(cp_id), subprotocols=["ocpp2.0.1"])
            for cp_id in ("CP1", "CP2")
        ]
        for ws in sockets:
            await ws.send('[2,"1","Heartbeat",{}]')
        await asyncio.sleep(0.2)
        exit_code = await asyncio.to_thread(process.terminate, 10)
        assert exit_code == 0, process.log()
        for ws in sockets:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1012
        events = [
            json.loads(line)["event"] for line in process.log().splitlines() if line.startswith("{")
        ]
        assert "gateway.stopped" in events
    finally:
        process.stop()
