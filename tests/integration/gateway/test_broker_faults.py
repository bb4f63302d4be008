"""Broker faults and abuse on every link: nothing accepted is lost, no CP cut off without reason."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import socket
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.chaos import Outage, persistent_broker, run_fault
from gateway.server import Gateway
from tests.support.gateway import GatewayProcess, running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import mqtt_peer
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def connect_with_tiny_receive_buffer(gw: Gateway) -> ClientConnection:
    """A CP connection whose socket holds only a few kB that it has not read (no autotuning)."""
    address = urlsplit(ws_url(gw))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (address.hostname, address.port))
    return await connect(
        ws_url(gw), sock=sock, subprotocols=["ocpp2.0.1"], max_queue=1, compression=None
    )


def metric(gw: Gateway, line_start: str) -> float:
    for line in gw.metrics.render().decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_poison_message_is_dropped_and_the_next_one_reaches_the_cp(
    broker: MosquittoProcess,
) -> None:
    async with (
        running_gateway(broker.url) as gw,
        mqtt_peer(broker.url, "CP1/in") as csms,
        connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as ws,
    ):
        await ws.send('[2,"boot","Heartbeat",{}]')  # once bridged, CP1/out is subscribed
        await csms.next()
        nested = "[" * 100_000 + "]" * 100_000
        for poison in (nested, '[2,"x",NaN]', b"\xff\xfe"):
            await csms.publish("CP1/out", poison)
        await csms.publish("CP1/out", '[2,"after","Reset",{"type":"Immediate"}]')
        assert await asyncio.wait_for(ws.recv(), 10) == '[2,"after","Reset",{"type":"Immediate"}]'
        assert ws.close_code is None
        dropped = 'ocpp_gateway_frames_dropped_total{direction="out",reason="malformed"}'
        assert metric(gw, dropped) == 2
        invalid = 'ocpp_gateway_frames_dropped_total{direction="out",reason="invalid_utf8"}'
        assert metric(gw, invalid) == 1


async def test_a_cp_that_does_not_read_is_bounded_counted_and_closed(
    broker: MosquittoProcess,
) -> None:
    async with (
        running_gateway(broker.url, out_queue_limit=50, write_timeout=2.0) as gw,
        mqtt_peer(broker.url, "CP1/undelivered") as csms,
    ):
        # A client that never reads: its receive queue and then TCP fill up.
        ws = await connect(ws_url(gw), subprotocols=["ocpp2.0.1"], max_queue=1, compression=None)
        await ws.send('[2,"boot","Heartbeat",{}]')  # once bridged, CP1/out is subscribed
        await until(lambda: gw.metrics.bridged.frames_in == 1, what="the first frame")
        # 32 MB: more than the kernel buffers on both sides of a loopback connection hold.
        message = json.dumps([2, "x", "DataTransfer", {"vendorId": "v", "data": "d" * 4000}])
        for _ in range(80):
            await asyncio.gather(*(csms.publish("CP1/out", message) for _ in range(100)))
        too_slow = 'ocpp_gateway_frames_dropped_total{direction="out",reason="cp_too_slow"}'
        await until(lambda: metric(gw, too_slow) > 0, timeout=20, what="drops to be counted")
        await until(
            lambda: metric(gw, "ocpp_gateway_write_timeouts_total") == 1,
            timeout=30,
            what="the CP to be closed for not reading",
        )
        await until(lambda: len(gw.sessions) == 0, timeout=20, what="the session to end")
        assert metric(gw, 'ocpp_gateway_closes_total{code="1008"}') == 1
        # The CSMS learns what did not reach the CP.
        notice = json.loads((await csms.next(timeout=10)).payload)
        assert (notice["cp_id"], notice["reason"]) == ("CP1", "cp_too_slow")
        assert notice["message"] == message
        await ws.close()


@pytest.mark.parametrize("leaving", ["abort", "takeover"])
async def test_messages_queued_for_a_cp_that_leaves_are_reported_undelivered(
    broker: MosquittoProcess, leaving: str
) -> None:
    """The CP drops its connection, or a newer connection of it replaces this one while the
    gateway still waits for the old socket to take a message."""
    async with (
        running_gateway(broker.url, out_queue_limit=50) as gw,
        mqtt_peer(broker.url, "CP1/undelivered") as csms,
    ):
        ws = await connect_with_tiny_receive_buffer(gw)
        await ws.send('[2,"boot","Heartbeat",{}]')  # once bridged, CP1/out is subscribed
        await until(lambda: gw.metrics.bridged.frames_in == 1, what="the first frame")
        # The CP reads nothing: its few kB of buffers fill, then the gateway's queue for it.
        ws.transport.pause_reading()
        too_slow = 'ocpp_gateway_frames_dropped_total{direction="out",reason="cp_too_slow"}'
        data = "d" * 4000

        async def keep_publishing() -> None:
            for n in itertools.count():
                await csms.publish("CP1/out", f'[2,"m{n}","DataTransfer",{{"d":"{data}"}}]')

        publishing = asyncio.create_task(keep_publishing())
        try:
            await until(lambda: metric(gw, too_slow) > 0, timeout=20, what="a full queue")
            if leaving == "abort":  # the CP leaves with messages still queued for it
                ws.transport.abort()
            else:
                newer = await connect(ws_url(gw), subprotocols=["ocpp2.0.1"])
            await asyncio.sleep(0.2)
        finally:
            publishing.cancel()
        left = 'ocpp_gateway_frames_dropped_total{direction="out",reason="cp_disconnected"}'
        # A replaced CP that reads nothing holds its close handshake until the close timeout.
        await until(lambda: metric(gw, left) > 0, timeout=30, what="drops for the CP leaving")
        while True:  # notices for the messages dropped as too slow (or not read) come first
            notice = json.loads((await csms.next(timeout=10)).payload)
            if notice["reason"] == "cp_disconnected":
                break
            assert notice["reason"] in {"cp_too_slow", "cp_not_reading"}, notice
        assert notice["cp_id"] == "CP1"
        assert json.loads(notice["message"])[2] == "DataTransfer"
        if leaving == "takeover":
            await newer.close()


@pytest.mark.parametrize("fault", ["kill", "freeze"])
async def test_a_broker_outage_within_the_grace_closes_no_cp_and_loses_nothing(fault: str) -> None:
    """100 CPs in a closed loop; the broker is killed (or frozen) for 7 s, grace 10 s."""
    async with (
        persistent_broker() as broker,
        running_gateway(broker.url, broker_grace=10.0, registry="allow-all") as gw,
    ):
        figures = await run_fault(
            f"ws://127.0.0.1:{gw.port}", broker, Outage(fault, 7.0), cps=100, after=6.0
        )
        acked = metric(gw, 'ocpp_gateway_frames_total{direction="in"}')
    print(fault, figures, "acked by the broker:", acked)
    assert figures["cps_closed"] == 0, figures
    assert figures["cps_out_of_order"] == 0, figures
    # Every frame a CP sent was acknowledged by the broker: the gateway lost none.
    assert acked == figures["sent"], figures
    if fault == "freeze":
        assert figures["lost"] == 0, figures
    # A broker killed with SIGKILL loses what it acknowledged but had not yet passed on
    # (Mosquitto saves to disk once a second); bench/chaos.py reports those figures.


async def test_a_frozen_broker_is_noticed_within_the_timeout() -> None:
    async with (
        persistent_broker() as broker,
        running_gateway(broker.url, mqtt_timeout=1.0, broker_grace=10.0) as gw,
        connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as ws,
    ):
        await ws.send('[2,"before","Heartbeat",{}]')  # once bridged, the CP's channel is open
        await until(lambda: gw.metrics.bridged.frames_in == 1, what="the first frame")
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        try:
            # No traffic at all: the link's own liveness check must notice.
            await until(lambda: not gw.ready, timeout=5, what="readiness to drop")
        finally:
            broker.process.send_signal(signal.SIGCONT)
        await until(lambda: gw.ready, timeout=15, what="readiness to return")
        async with mqtt_peer(broker.url, "CP1/in") as csms:
            await ws.send('[2,"after","Heartbeat",{}]')
            while (await csms.next(timeout=15)).payload != b'[2,"after","Heartbeat",{}]':
                pass
        assert ws.close_code is None


async def test_gateways_sharing_an_id_do_not_fight_and_cps_cannot_take_their_client_ids(
    broker: MosquittoProcess,
) -> None:
    async with (
        running_gateway(broker.url, gateway_id="g1") as first,
        running_gateway(broker.url, gateway_id="g1") as second,
    ):
        # The gateway's own client ids contain `:`, which a cpId may not.
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(first, "ocpp-gateway:probe:g1"), subprotocols=["ocpp2.0.1"])
        assert refused.value.response.status_code == 400
        for _ in range(30):
            assert first.ready and second.ready
            await asyncio.sleep(0.1)


async def test_takeover_races_across_two_gateways_leave_the_newest_connection(
    broker: MosquittoProcess,
) -> None:
    """100 races: a CP dials one gateway, then another; the second handshake always wins."""
    ids = [f"RACE{n}" for n in range(100)]
    env = {"GATEWAY_REGISTRY": "allow-all", "GATEWAY_LOG_LEVEL": "WARNING"}
    gateways = [GatewayProcess(broker.url, **env), GatewayProcess(broker.url, **env)]
    for gateway in gateways:
        gateway.start()
    try:
        pairs = await asyncio.gather(*(race(gateways, cp_id) for cp_id in ids))
        async with mqtt_peer(broker.url, "+/in") as csms:
            for cp_id, (older, newer) in zip(ids, pairs, strict=True):
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(older.recv(), 15)
                assert older.close_code == 1000, (
                    cp_id,
                    older.close_code,
                    [line for g in gateways for line in g.log().splitlines() if cp_id in line],
                )
                await newer.send(f'[2,"{cp_id}","Heartbeat",{{}}]')
            arrived: set[str] = set()
            with contextlib.suppress(TimeoutError):
                while arrived != set(ids):
                    arrived.add(json.loads((await csms.next(timeout=15)).payload)[1])
            missing = sorted(set(ids) - arrived)
            assert not missing, (
                missing,
                [line for g in gateways for line in g.log().splitlines() if _names(line, missing)],
            )
            await asyncio.sleep(10)  # no flapping afterwards
            assert all(newer.close_code is None for _, newer in pairs)
        for _, newer in pairs:
            await newer.close()
    finally:
        for gateway in gateways:
            gateway.stop()


def _names(line: str, cp_ids: list[str]) -> bool:
    return any(f'"{cp_id}"' in line or f"={cp_id} " in line for cp_id in cp_ids)


async def race(
    gateways: list[GatewayProcess], cp_id: str
) -> tuple[ClientConnection, ClientConnection]:
    first, second = random.sample(gateways, 2)
    older = await connect(first.url(cp_id), subprotocols=["ocpp2.0.1"])
    await asyncio.sleep(random.uniform(0, 0.02))
    newer = await connect(second.url(cp_id), subprotocols=["ocpp2.0.1"])
    return older, newer
