"""One live connection per charge point: the newest wins, inside one gateway and across two."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.server import Gateway
from tests.support.gateway import GatewayProcess, running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def open_cp(url: str) -> ClientConnection:
    return await connect(url, subprotocols=["ocpp2.0.1"])


async def wait_closed(ws: ClientConnection, timeout: float = 10) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code, ws.close_reason


async def round_trip(ws: ClientConnection, csms: MqttPeer, cp_id: str, tag: str) -> None:
    """A CALL reaches `<cp>/in` and the answer on `<cp>/out` reaches this very connection."""
    await ws.send(f'[2,"{tag}","Heartbeat",{{}}]')
    while True:
        received = await csms.next(timeout=10)
        if received.payload == f'[2,"{tag}","Heartbeat",{{}}]'.encode():
            break
    assert received.topic == f"{cp_id}/in"
    await csms.publish(f"{cp_id}/out", f'[3,"{tag}",{{}}]')
    assert await asyncio.wait_for(ws.recv(), 10) == f'[3,"{tag}",{{}}]'


async def test_new_connection_replaces_the_old_with_1000(gateway: Gateway, csms: MqttPeer) -> None:
    old = await open_cp(ws_url(gateway))
    await round_trip(old, csms, "CP1", "old")
    new = await open_cp(ws_url(gateway))
    assert await wait_closed(old) == (1000, "")
    await round_trip(new, csms, "CP1", "new-1")
    # The old connection's teardown must not have unsubscribed the new session.
    await asyncio.sleep(0.2)
    await round_trip(new, csms, "CP1", "new-2")
    await new.close()


async def test_frames_sent_just_before_the_takeover_are_not_lost(
    gateway: Gateway, csms: MqttPeer
) -> None:
    old = await open_cp(ws_url(gateway))
    await round_trip(old, csms, "CP1", "warm")
    for n in range(20):
        await old.send(f'[2,"burst{n}","Heartbeat",{{}}]')
    new = await open_cp(ws_url(gateway))
    await wait_closed(old)
    burst = [(await csms.next()).payload for _ in range(20)]
    assert burst == [f'[2,"burst{n}","Heartbeat",{{}}]'.encode() for n in range(20)]
    await round_trip(new, csms, "CP1", "after")
    await new.close()


async def test_overlapping_connects_and_disconnects_leave_exactly_one(
    gateway: Gateway, csms: MqttPeer
) -> None:
    rng = random.Random(7)

    async def connect_and_maybe_leave(n: int) -> ClientConnection | None:
        await asyncio.sleep(rng.random() * 0.05)
        ws = await open_cp(ws_url(gateway))
        if n % 3 == 0:
            await ws.close()
            return None
        return ws

    results = await asyncio.gather(*(connect_and_maybe_leave(n) for n in range(12)))
    open_ones = [ws for ws in results if ws is not None]
    await until(lambda: len(gateway.sessions) <= 1, what="older sessions to close")
    # Every connection but at most one is closed; if one survives, it is fully bridged.
    for ws in open_ones:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
    survivors = [ws for ws in open_ones if ws.close_code is None]
    assert len(survivors) <= 1
    latest = await open_cp(ws_url(gateway))
    for ws in survivors:
        assert await wait_closed(ws) == (1000, "")
    await round_trip(latest, csms, "CP1", "latest")
    await asyncio.sleep(0.3)
    await round_trip(latest, csms, "CP1", "still-latest")
    assert len(gateway.sessions) == 1
    await latest.close()


@pytest.fixture
def two_gateways(broker: MosquittoProcess):
    first, second = GatewayProcess(broker.url), GatewayProcess(broker.url)
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


async def test_takeover_across_two_gateways_without_flapping(
    two_gateways: tuple[GatewayProcess, GatewayProcess], csms: MqttPeer
) -> None:
    first, second = two_gateways
    on_first = await open_cp(first.url("CP1"))
    await round_trip(on_first, csms, "CP1", "first")
    on_second = await open_cp(second.url("CP1"))
    assert await wait_closed(on_first) == (1000, "")
    # The CP stays on the second gateway: no reconnect war between the replicas.
    for n in range(5):
        await round_trip(on_second, csms, "CP1", f"second-{n}")
        await asyncio.sleep(0.3)
    assert on_second.close_code is None
    await on_second.close()


async def test_simultaneous_connects_to_two_gateways_leave_exactly_one(
    two_gateways: tuple[GatewayProcess, GatewayProcess], csms: MqttPeer
) -> None:
    first, second = two_gateways
    for attempt in range(5):
        a, b = await asyncio.gather(open_cp(first.url("CP2")), open_cp(second.url("CP2")))
        await until(
            lambda a=a, b=b: (a.close_code is None) + (b.close_code is None) <= 1,
            timeout=30,  # a loaded machine: the loser may wait out a claim read (1 s) or two
            what="one of the two to be closed",
        )
        await asyncio.sleep(1.0)  # then check that nothing flaps
        alive = [ws for ws in (a, b) if ws.close_code is None]
        assert len(alive) == 1, (
            f"attempt {attempt}: {len(alive)} connections alive",
            [(ws.close_code, ws.close_reason) for ws in (a, b)],
            [line for g in two_gateways for line in g.log().splitlines() if "CP2" in line][-12:],
        )
        await round_trip(alive[0], csms, "CP2", f"attempt-{attempt}")
        await asyncio.sleep(0.5)
        assert alive[0].close_code is None
        await alive[0].close()


async def test_removed_from_the_registry_while_connected_closes_1008(
    broker: MosquittoProcess, csms: MqttPeer, tmp_path: Path
) -> None:
    things = tmp_path / "things.txt"
    things.write_text("CP1\nCP2\n")
    async with running_gateway(
        broker.url,
        registry="file",
        registry_file=things,
        registry_file_poll_interval=0.1,
        registry_revalidate_interval=0.2,
    ) as gw:
        cp1 = await open_cp(ws_url(gw, "CP1"))
        cp2 = await open_cp(ws_url(gw, "CP2"))
        await round_trip(cp1, csms, "CP1", "before")
        things.write_text("CP2\n")
        code, reason = await wait_closed(cp1)
        assert (code, reason) == (1008, "Charge Point CP1 not registered as an IoT Thing")
        await round_trip(cp2, csms, "CP2", "unaffected")
        await cp2.close()
