"""The shared link against a broker that allows 50 subscriptions per connection, as IoT Core does.

The broker is Mosquitto behind `tests/support/quota_proxy.py`, which refuses (SUBACK 0x97) a
SUBSCRIBE that would take one client's session past 50 topic filters. The CSMS peer talks to
Mosquitto directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.links import SharedLink
from gateway.server import Gateway
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer, mqtt_peer
from tests.support.quota_proxy import QuotaProxy
from tests.support.waiting import until

pytestmark = pytest.mark.integration

IMPLS = ["aiomqtt", "awscrt"]
QUOTA = 50
BATCH = 100


@pytest.fixture
async def proxy(broker: MosquittoProcess) -> AsyncIterator[QuotaProxy]:
    quota = await QuotaProxy(broker.host, broker.port, QUOTA).start()
    yield quota
    await quota.stop()


@contextlib.asynccontextmanager
async def shared_gateway(
    proxy: QuotaProxy, impl: str, **overrides: object
) -> AsyncIterator[Gateway]:
    async with running_gateway(
        proxy.url, link_mode="shared", link_impl=impl, registry="allow-all", **overrides
    ) as gw:
        yield gw


def lanes(gw: Gateway) -> int:
    assert isinstance(gw.link, SharedLink)
    return len(gw.link.lanes)


async def connect_all(gw: Gateway, cp_ids: list[str]) -> list[ClientConnection]:
    """Connect in batches, as a fleet coming back would; every CP sends one CALL."""
    connections: list[ClientConnection] = []
    for start in range(0, len(cp_ids), BATCH):
        batch = cp_ids[start : start + BATCH]
        opened = await asyncio.gather(
            *(connect(ws_url(gw, cp_id), subprotocols=["ocpp1.6"]) for cp_id in batch)  # type: ignore[list-item]
        )
        await asyncio.gather(
            *(
                ws.send(f'[2,"{cp_id}","Heartbeat",{{}}]')
                for ws, cp_id in zip(opened, batch, strict=True)
            )
        )
        connections.extend(opened)
    return connections


async def answer_every_call(csms: MqttPeer, count: int) -> set[str]:
    """Play the CSMS: answer each CALL reaching `<cpId>/in` on `<cpId>/out`."""
    seen: set[str] = set()
    while len(seen) < count:
        received = await csms.next(timeout=60)
        cp_id = received.topic.removesuffix("/in")
        if cp_id in seen:
            continue
        seen.add(cp_id)
        await csms.publish(f"{cp_id}/out", f'[3,"{cp_id}",{{"currentTime":"now"}}]')
    return seen


async def answered(ws: ClientConnection, cp_id: str) -> bool:
    return await asyncio.wait_for(ws.recv(), 60) == f'[3,"{cp_id}",{{"currentTime":"now"}}]'


@pytest.mark.parametrize("impl", IMPLS)
async def test_2000_cps_are_served_with_no_subscription_refused(
    proxy: QuotaProxy, broker: MosquittoProcess, impl: str
) -> None:
    cp_ids = [f"POOL-{impl}-{n:04}" for n in range(2000)]
    async with (
        shared_gateway(proxy, impl, shared_max_subscriptions=QUOTA) as gw,
        mqtt_peer(broker.url, "+/in") as csms,
    ):
        csms_task = asyncio.create_task(answer_every_call(csms, len(cp_ids)))
        connections = await connect_all(gw, cp_ids)
        try:
            assert await asyncio.wait_for(csms_task, 120) == set(cp_ids)
            replies = await asyncio.gather(
                *(answered(ws, cp_id) for ws, cp_id in zip(connections, cp_ids, strict=True))
            )
            assert all(replies)
            assert proxy.refused == 0
            assert lanes(gw) == math.ceil(len(cp_ids) * 2 / QUOTA)
            assert all(len(filters) <= QUOTA for filters in proxy.sessions.values())
            assert len(gw.sessions) == len(cp_ids)
        finally:
            await asyncio.gather(*(ws.close() for ws in connections))
        # CPs that leave free their lane's room: the next ones take it, no lane is added.
        await until(lambda: len(gw.sessions) == 0, timeout=30, what="every CP to leave")
        await until(
            lambda: all(len(filters) == 0 for filters in proxy.sessions.values()),
            timeout=30,
            what="every subscription to be dropped",
        )
        again = await connect_all(gw, cp_ids[:100])
        await asyncio.gather(*(ws.close() for ws in again))
        assert lanes(gw) == math.ceil(len(cp_ids) * 2 / QUOTA)
        assert proxy.refused == 0


@pytest.mark.parametrize("impl", IMPLS)
async def test_without_the_pool_setting_the_broker_refuses_the_51st_subscription(
    proxy: QuotaProxy, impl: str
) -> None:
    """The control: one connection for every CP, and the proxy enforces its quota."""
    async with shared_gateway(proxy, impl, shared_max_subscriptions=0) as gw:
        with capture_logs() as logs:
            cp_ids = [f"ONE-{impl}-{n}" for n in range(30)]
            connections = await asyncio.gather(
                *(connect(ws_url(gw, cp_id), subprotocols=["ocpp1.6"]) for cp_id in cp_ids)  # type: ignore[list-item]
            )
            await asyncio.gather(*(ws.send('[2,"1","Heartbeat",{}]') for ws in connections))
            await until(lambda: proxy.refused > 0, what="a refused subscription")
            assert lanes(gw) == 1
            # 25 CPs fit; the others are closed (the broker refused them), to retry later.
            await until(lambda: len(gw.sessions) == QUOTA // 2, what="the refused CPs to be closed")
            closed = 0
            for ws in connections:
                with contextlib.suppress(TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 0.2)
                closed += ws.close_code is not None
            assert closed == len(cp_ids) - QUOTA // 2
            refusals = [entry for entry in logs if entry["event"] == "broker.subscription_refused"]
            assert refusals
            assert "GATEWAY_SHARED_MAX_SUBSCRIPTIONS" in refusals[0]["hint"]
            await asyncio.gather(*(ws.close() for ws in connections))


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_lane_that_loses_the_broker_closes_none_of_its_cps_within_the_grace(
    proxy: QuotaProxy, broker: MosquittoProcess, impl: str
) -> None:
    cp_ids = [f"LANE-{impl}-{n:02}" for n in range(60)]  # 3 lanes of 20 CPs at 40 subscriptions
    async with (
        shared_gateway(proxy, impl, shared_max_subscriptions=40, broker_grace=10.0) as gw,
        mqtt_peer(broker.url, "+/in") as csms,
    ):
        csms_task = asyncio.create_task(answer_every_call(csms, len(cp_ids)))
        connections = await connect_all(gw, cp_ids)
        await asyncio.wait_for(csms_task, 60)
        assert all(
            await asyncio.gather(
                *(answered(ws, c) for ws, c in zip(connections, cp_ids, strict=True))
            )
        )
        assert isinstance(gw.link, SharedLink)
        assert len(gw.link.lanes) == 3
        second = gw.link.lanes[1]
        on_second = [
            (ws, cp_id)
            for ws, cp_id in zip(connections, cp_ids, strict=True)
            if second.holds(f"{cp_id}/out")
        ]
        assert len(on_second) == 20

        outage = 3.0
        proxy.drop(second.connection.client_id, hold=outage)
        await until(lambda: not second.ready, what="the lane to notice")
        # The other lanes still serve, new CPs included; the lane's CPs wait for it.
        assert gw.ready
        ws, cp_id = on_second[0]
        await ws.send(f'[2,"{cp_id}-a","Heartbeat",{{}}]')
        await ws.send(f'[2,"{cp_id}-b","Heartbeat",{{}}]')
        other = next(
            pair for pair in zip(connections, cp_ids, strict=True) if pair not in on_second
        )
        await other[0].send(f'[2,"{other[1]}-during","Heartbeat",{{}}]')
        assert (await csms.next(timeout=5)).topic == f"{other[1]}/in"
        assert not second.ready
        await until(lambda: second.ready, timeout=outage + 5, what="the lane to reconnect")
        # Frames sent while the lane was down reached the broker afterwards, in order.
        payloads = [(await csms.next(timeout=10)).payload for _ in range(2)]
        assert payloads == [f'[2,"{cp_id}-{tag}","Heartbeat",{{}}]'.encode() for tag in "ab"]
        # Its CPs are still there, and so is the way back to them.
        await csms.publish(f"{cp_id}/out", '[3,"after",{}]')
        assert await asyncio.wait_for(ws.recv(), 10) == '[3,"after",{}]'
        assert len(gw.sessions) == len(cp_ids)
        assert all(each.close_code is None for each in connections)
        assert proxy.refused == 0
        await asyncio.gather(*(each.close() for each in connections))


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_lane_away_longer_than_the_grace_closes_its_own_cps_only(
    proxy: QuotaProxy, broker: MosquittoProcess, impl: str
) -> None:
    cp_ids = [f"AWAY-{impl}-{n:02}" for n in range(30)]  # 3 lanes of 10 CPs
    async with (
        shared_gateway(proxy, impl, shared_max_subscriptions=20, broker_grace=2.0) as gw,
        mqtt_peer(broker.url, "+/in") as csms,
    ):
        csms_task = asyncio.create_task(answer_every_call(csms, len(cp_ids)))
        connections = await connect_all(gw, cp_ids)
        await asyncio.wait_for(csms_task, 60)
        assert isinstance(gw.link, SharedLink)
        second = gw.link.lanes[1]
        on_second = {cp_id for cp_id in cp_ids if second.holds(f"{cp_id}/out")}
        assert len(on_second) == 10

        proxy.drop(second.connection.client_id, hold=4.0)
        await until(lambda: len(gw.sessions) == 20, timeout=10, what="the lane's CPs to close")
        for ws, cp_id in zip(connections, cp_ids, strict=True):
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                while True:  # the answers of the first round trip, then the close
                    await asyncio.wait_for(ws.recv(), 0.05)
            expected = 1011 if cp_id in on_second else None
            assert (cp_id, ws.close_code) == (cp_id, expected)
        # Back again, the lane drops the subscriptions of the CPs that left while it was away.
        await until(lambda: second.ready, timeout=10, what="the lane to reconnect")
        await until(
            lambda: not proxy.sessions[second.connection.client_id],
            what="the lane's stale subscriptions to go",
        )
        assert second.subscriptions == 0
        await asyncio.gather(*(ws.close() for ws in connections))


@pytest.mark.parametrize("impl", IMPLS)
async def test_only_the_first_lane_speaks_for_the_gateway_instance(
    proxy: QuotaProxy, broker: MosquittoProcess, impl: str
) -> None:
    """A status consumer takes every CP of an instance offline on its will: lanes but the first
    one drop without one."""
    cp_ids = [f"WILL-{impl}-{n}" for n in range(4)]  # 2 lanes of 2 CPs
    async with (
        shared_gateway(proxy, impl, shared_max_subscriptions=4) as gw,
        mqtt_peer(broker.url, "+/in") as csms,
    ):
        csms_task = asyncio.create_task(answer_every_call(csms, len(cp_ids)))
        connections = await connect_all(gw, cp_ids)
        await asyncio.wait_for(csms_task, 30)
        assert isinstance(gw.link, SharedLink)
        first, second = gw.link.lanes
        async with mqtt_peer(broker.url, gw.link.broker.gateway_topic) as watcher:
            retained = json.loads((await watcher.next()).payload)
            assert (retained["instance"], retained["online"]) == (gw.link.broker.nonce, True)

            proxy.drop(second.connection.client_id)
            await until(lambda: second.ready, what="the second lane to come back")
            with pytest.raises(TimeoutError):
                await watcher.next(timeout=1.0)

            topics = [f"{cp_id}/presence" for cp_id in cp_ids]
            async with mqtt_peer(broker.url, *topics) as presence:
                for _ in cp_ids:  # the retained documents
                    assert json.loads((await presence.next()).payload)["connected"]
                proxy.drop(first.connection.client_id)
                will = json.loads((await watcher.next()).payload)
                assert (will["instance"], will["online"]) == (gw.link.broker.nonce, False)
                await until(lambda: first.ready, what="the first lane to come back")
                back = json.loads((await watcher.next()).payload)
                assert back["online"] is True
                # What the will took offline says it is online again, on every lane.
                announced: set[str] = set()
                while len(announced) < len(cp_ids):
                    document = json.loads((await presence.next()).payload)
                    assert document["connected"]
                    announced.add(document["cp_id"])
                assert announced == set(cp_ids)
        await asyncio.gather(*(ws.close() for ws in connections))
