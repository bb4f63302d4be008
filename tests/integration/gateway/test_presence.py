"""Presence on MQTT, on every link: retained documents on connect and disconnect, and wills."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.chaos import persistent_broker
from tests.support.gateway import GatewayProcess, running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer, mqtt_peer
from tests.support.waiting import until

pytestmark = pytest.mark.integration

Document = dict[str, Any]


async def document_on(
    peer: MqttPeer, topic: str, wanted: Callable[[Document], bool], timeout: float = 10.0
) -> Document:
    """The first message on `topic` that `wanted` accepts (retained ones come first)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await peer.next(timeout=timeout)
            if message.topic == topic and message.payload:
                document: Document = json.loads(message.payload)
                if wanted(document):
                    return document


async def test_connect_and_disconnect_are_published_retained(broker: MosquittoProcess) -> None:
    async with running_gateway(broker.url, gateway_id="gw-presence") as gw:
        async with connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as ws:
            await ws.send('[2,"1","Heartbeat",{}]')
            # A consumer that subscribes later still learns it: the document is retained.
            async with mqtt_peer(broker.url, "CP1/presence") as consumer:
                online = await document_on(consumer, "CP1/presence", lambda d: d["connected"])
        assert online["gateway"] == "gw-presence"
        assert online["subprotocol"] == "ocpp2.0.1"
        assert online["remote"].startswith("127.0.0.1:")
        assert online["since"].endswith("+00:00")
        async with mqtt_peer(broker.url, "CP1/presence") as consumer:
            offline = await document_on(consumer, "CP1/presence", lambda d: not d["connected"])
        assert offline["connection"] == online["connection"]
        assert (offline["code"], offline["closed_by"]) == (1000, "cp")
        assert offline["at"] >= offline["since"]

        async with connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as ws:
            await ws.send(b"\x00binary")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        async with mqtt_peer(broker.url, "CP1/presence") as consumer:
            closed = await document_on(
                consumer, "CP1/presence", lambda d: d["connection"] > online["connection"]
            )
        assert (closed["connected"], closed["code"], closed["closed_by"]) == (
            False,
            1003,
            "gateway",
        )


async def test_a_takeover_leaves_the_newer_connection_online(broker: MosquittoProcess) -> None:
    async with (
        running_gateway(broker.url) as gw,
        connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as older,
    ):
        await older.send('[2,"1","Heartbeat",{}]')
        async with mqtt_peer(broker.url, "CP1/presence") as consumer:
            first = await document_on(consumer, "CP1/presence", lambda d: d["connected"])
        async with connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as newer:
            await newer.send('[2,"2","Heartbeat",{}]')
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(older.recv(), 5)
            await asyncio.sleep(0.5)  # anything the older connection might still publish
            async with mqtt_peer(broker.url, "CP1/presence") as consumer:
                current = await document_on(consumer, "CP1/presence", lambda d: True)
            assert current["connected"] is True
            assert current["connection"] == first["connection"] + 1


async def test_sigterm_says_shutdown_and_kill_leaves_a_will(
    broker: MosquittoProcess, link: tuple[str, str]
) -> None:
    mode, _ = link
    async with mqtt_peer(broker.url, "+/presence", "ocpp-gateway/gateways/+") as consumer:
        process = GatewayProcess(broker.url, GATEWAY_GATEWAY_ID="gw-term")
        process.start()
        try:
            async with connect(process.url("CP1"), subprotocols=["ocpp2.0.1"]) as ws:
                await ws.send('[2,"1","Heartbeat",{}]')
                await document_on(consumer, "CP1/presence", lambda d: d["connected"])
                assert await asyncio.to_thread(process.terminate, 15) == 0
            last = await document_on(consumer, "CP1/presence", lambda d: not d["connected"])
            assert (last["code"], last["closed_by"]) == (1012, "shutdown")
        finally:
            process.stop()

        process = GatewayProcess(broker.url, GATEWAY_GATEWAY_ID="gw-kill")
        process.start()
        try:
            async with connect(process.url("CP2"), subprotocols=["ocpp2.0.1"]) as ws:
                await ws.send('[2,"1","Heartbeat",{}]')
                online = await document_on(consumer, "CP2/presence", lambda d: d["connected"])
                assert process.process is not None
                process.process.send_signal(signal.SIGKILL)
                if mode == "per-cp":
                    # The broker publishes each CP connection's will.
                    lost = await document_on(consumer, "CP2/presence", lambda d: not d["connected"])
                    assert lost["closed_by"] == "gateway_lost"
                    assert lost["connection"] == online["connection"]
                else:
                    # The gateway's own will: every CP naming this instance is offline.
                    status = await document_on(
                        consumer,
                        "ocpp-gateway/gateways/gw-kill",
                        lambda d: d["instance"] == online["instance"] and not d["online"],
                    )
                    assert status["gateway"] == "gw-kill"
        finally:
            process.stop()


async def test_a_cp_closed_while_the_broker_is_away_is_announced_offline_once_it_is_back() -> None:
    """The broker is killed past the grace period and comes back with its retained state."""
    async with (
        persistent_broker() as broker,
        running_gateway(broker.url, broker_grace=2.0, mqtt_timeout=1.0) as gw,
        connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as ws,
    ):
        await ws.send('[2,"1","Heartbeat",{}]')
        async with mqtt_peer(broker.url, "CP1/presence") as consumer:
            online = await document_on(consumer, "CP1/presence", lambda d: d["connected"])
        # Killed only once Mosquitto has saved the document (it saves every second or two).
        saved = broker.workdir / "mosquitto.db"
        await until(
            lambda: saved.exists() and b'"connected": true' in saved.read_bytes(),
            what="the online document saved to disk",
        )
        assert broker.process is not None
        broker.process.kill()
        broker.process.wait()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 15)
        assert ws.close_code == 1011
        broker.start()
        async with mqtt_peer(broker.url, "CP1/presence") as consumer:
            offline = await document_on(
                consumer, "CP1/presence", lambda d: not d["connected"], timeout=15
            )
        assert offline["connection"] == online["connection"]
        assert (offline["code"], offline["closed_by"]) == (1011, "broker_loss")
        # Counted once the broker has acknowledged it, which may come after its delivery.
        published = 'ocpp_gateway_presence_late_farewells_total{result="published"} 1.0'
        await until(lambda: published in gw.metrics.render().decode(), what="the count")
