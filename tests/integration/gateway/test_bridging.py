"""Frames cross the gateway byte for byte, in order, both ways; bad frames get clear answers."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.server import Gateway
from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer, mqtt_peer

pytestmark = pytest.mark.integration

BOOT = (
    '[2,"0678cb2a","BootNotification",{"chargingStation":{"model":"ABC 123 XYZ",'
    '"vendorName":"Acme Electrical Systems"},"reason":"PowerUp"}]'
)


async def test_frames_reach_in_topic_byte_exact(gateway: Gateway, csms: MqttPeer) -> None:
    frames = [
        BOOT,
        '[2, "2", "DataTransfer", {"vendorId": "Grüße ⚡ 充電 🚗", "data": "  spaced  "}]',
        '[2,"3","DataTransfer",{"data":"' + "x" * 60_000 + '"}]',
    ]
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        for frame in frames:
            await ws.send(frame)
        for frame in frames:
            received = await csms.next()
            assert received.topic == "CP1/in"
            assert received.payload == frame.encode()
            assert received.user_properties == {"subprotocol": "ocpp2.0.1"}


async def test_out_topic_reaches_the_cp_byte_exact(gateway: Gateway, csms: MqttPeer) -> None:
    answer = (
        '[3,"0678cb2a",{"currentTime":"2023-02-16T19:00:18Z","interval":10,'
        '"status":"Accepted","note":"ünïcødé 🚗"}]'
    )
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(BOOT)
        await csms.next()  # the subscription is acknowledged before the first frame is forwarded
        await csms.publish("CP1/out", answer.encode())
        assert await asyncio.wait_for(ws.recv(), 5) == answer


async def test_answer_to_the_first_call_is_never_lost(gateway: Gateway, csms: MqttPeer) -> None:
    for attempt in range(20):
        async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
            await ws.send(BOOT)
            received = await csms.next()
            await csms.publish("CP1/out", f'[3,"0678cb2a",{{"attempt":{attempt}}}]')
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))[2] == {"attempt": attempt}
            assert received.payload == BOOT.encode()


async def test_topic_templates_are_configurable(broker: MosquittoProcess) -> None:
    async with (
        running_gateway(
            broker.url, topic_in="ocpp/{cp_id}/up", topic_out="ocpp/{cp_id}/down"
        ) as gw,
        mqtt_peer(broker.url, "ocpp/+/up") as peer,
        connect(ws_url(gw), subprotocols=["ocpp2.0.1"]) as ws,
    ):
        await ws.send(BOOT)
        assert (await peer.next()).topic == "ocpp/CP1/up"
        await peer.publish("ocpp/CP1/down", '[3,"0678cb2a",{}]')
        assert await asyncio.wait_for(ws.recv(), 5) == '[3,"0678cb2a",{}]'


@pytest.mark.parametrize(
    ("frame", "expected_code", "expected_id"),
    [
        ("this is not json", "RpcFrameworkError", "-1"),
        ('{"an": "object"}', "RpcFrameworkError", "-1"),
        ('[2,"m1","Heartbeat"]', "RpcFrameworkError", "m1"),
        ('[2,"m2","Heartbeat",[]]', "FormatViolation", "m2"),
        ('[7,"m3",{}]', "MessageTypeNotSupported", "m3"),
        ('[2,"m4","DataTransfer",{"data":NaN}]', "FormatViolation", "-1"),
        ('[2,"m5","DataTransfer",{"data":Infinity}]', "FormatViolation", "-1"),
        ('[2,"m6","DataTransfer",{"data":-Infinity}]', "FormatViolation", "-1"),
        ('[2,"\\ud800",1,{},null]', "RpcFrameworkError", "-1"),
    ],
)
async def test_malformed_frames_get_a_callerror_and_are_not_forwarded(
    gateway: Gateway, csms: MqttPeer, frame: str, expected_code: str, expected_id: str
) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer[:3] == [4, expected_id, expected_code]
        assert isinstance(answer[3], str) and answer[4] == {}
        await ws.send('[2,"after","Heartbeat",{}]')  # the session goes on
        assert (await csms.next()).payload == b'[2,"after","Heartbeat",{}]'


async def test_ocpp21_callresulterror_and_send_are_bridged_both_ways(
    gateway: Gateway, csms: MqttPeer
) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp2.1"]) as ws:
        assert ws.subprotocol == "ocpp2.1"
        frames = [
            '[6,"s1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"x","data":[]}]',
            '[5,"r1","InternalError","the answer could not be processed",{}]',
        ]
        for frame in frames:
            await ws.send(frame)
        for frame in frames:
            received = await csms.next()
            assert received.payload == frame.encode()
            assert received.user_properties == {"subprotocol": "ocpp2.1"}
        for frame in ['[6,"s2","NotifySettlement",{}]', '[5,"c9","FormatViolation","",{}]']:
            await csms.publish("CP1/out", frame)
            assert await asyncio.wait_for(ws.recv(), 5) == frame


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize(
    ("subprotocol", "code"), [("ocpp2.0.1", "FormatViolation"), ("ocpp1.6", "FormationViolation")]
)
async def test_deeply_nested_frame_gets_a_callerror_and_the_cp_stays(
    gateway: Gateway, csms: MqttPeer, compression: str | None, subprotocol: str, code: str
) -> None:
    async with connect(ws_url(gateway), subprotocols=[subprotocol], compression=compression) as ws:
        await ws.send(DEEP)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer[:3] == [4, "-1", code]
        await ws.send('[2,"after","Heartbeat",{}]')
        assert (await csms.next()).payload == b'[2,"after","Heartbeat",{}]'
    metrics = gateway.metrics.render().decode()
    assert 'ocpp_gateway_frames_rejected_total{direction="in",reason="FormatViolation"} 1.0' in (
        metrics
    )
    assert "ocpp_gateway_closes_total{" not in metrics  # the gateway closed nothing


async def test_deeply_nested_or_nan_messages_to_the_cp_are_dropped(
    gateway: Gateway, csms: MqttPeer
) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(BOOT)
        await csms.next()
        await csms.publish("CP1/out", DEEP.encode())
        await csms.publish("CP1/out", b'[3,"0678cb2a",{"v":NaN}]')
        await csms.publish("CP1/out", b'[3,"0678cb2a",{}]')
        assert await asyncio.wait_for(ws.recv(), 5) == '[3,"0678cb2a",{}]'
    metrics = gateway.metrics.render().decode()
    assert 'ocpp_gateway_frames_dropped_total{direction="out",reason="malformed"} 2.0' in metrics


async def test_ocpp16_error_codes(gateway: Gateway) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp1.6"]) as ws:
        await ws.send("garbage")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))[2] == "FormationViolation"


async def test_malformed_answers_from_the_cp_are_dropped_silently_to_the_cp(
    gateway: Gateway, csms: MqttPeer
) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send('[3,"r1"]')  # a CALLRESULT without payload: never answered with an error
        await ws.send('[4,"r2","NotImplemented","oops",{}]')  # a valid CALLERROR is forwarded
        assert (await csms.next()).payload == b'[4,"r2","NotImplemented","oops",{}]'
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)


async def test_invalid_out_messages_are_dropped_and_counted(
    gateway: Gateway, csms: MqttPeer
) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(BOOT)
        await csms.next()
        await csms.publish("CP1/out", b"\xff\xfe not utf-8")
        await csms.publish("CP1/out", b'[4,"x","Oops",')  # truncated CALLERROR
        await csms.publish("CP1/out", b'[3,"0678cb2a",{}]')
        assert await asyncio.wait_for(ws.recv(), 5) == '[3,"0678cb2a",{}]'
    metrics = gateway.metrics.render().decode()
    assert 'ocpp_gateway_frames_dropped_total{direction="out",reason="invalid_utf8"} 1.0' in metrics
    assert 'ocpp_gateway_frames_dropped_total{direction="out",reason="malformed"} 1.0' in metrics


async def test_binary_frame_closes_1003(gateway: Gateway, csms: MqttPeer) -> None:
    async with connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(b'[2,"1","Heartbeat",{}]')
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1003
    assert csms.received.empty()


async def test_oversize_frame_closes_1009(broker: MosquittoProcess, csms: MqttPeer) -> None:
    async with running_gateway(broker.url, max_frame_bytes=1024) as gw:
        async with connect(ws_url(gw), subprotocols=["ocpp2.0.1"], compression=None) as ws:
            await ws.send('[2,"1","DataTransfer",{"data":"' + "x" * 2000 + '"}]')
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009
    assert csms.received.empty()


async def test_order_under_concurrency(broker: MosquittoProcess, csms: MqttPeer) -> None:
    """200 charge points, 50 calls each, both directions: per-CP order is preserved."""
    cp_count, calls = 200, 50
    ids = [f"ORDER{n:03d}" for n in range(cp_count)]

    async def charge_point(gateway: Gateway, cp_id: str) -> list[str]:
        async with connect(ws_url(gateway, cp_id), subprotocols=["ocpp2.0.1"]) as ws:
            for n in range(calls):
                await ws.send(f'[2,"{n}","Heartbeat",{{}}]')
            return [str(await asyncio.wait_for(ws.recv(), 60)) for _ in range(calls)]

    async def answer_everything() -> dict[str, list[int]]:
        seen: dict[str, list[int]] = {cp_id: [] for cp_id in ids}
        answers = []
        for _ in range(cp_count * calls):
            received = await csms.next(timeout=60)
            cp_id = received.topic.split("/")[0]
            message_id = json.loads(received.payload)[1]
            seen[cp_id].append(int(message_id))
            # Tasks start in creation order and hand their message to the client at once,
            # so answers leave in order without waiting for each acknowledgement.
            answers.append(
                asyncio.create_task(csms.publish(f"{cp_id}/out", f'[3,"{message_id}",{{}}]'))
            )
        await asyncio.gather(*answers)
        return seen

    async with running_gateway(broker.url, registry_ids=ids) as gateway:
        answering = asyncio.create_task(answer_everything())
        answers = await asyncio.gather(*(charge_point(gateway, cp_id) for cp_id in ids))
        seen = await answering
    assert all(seen[cp_id] == list(range(calls)) for cp_id in ids)
    for received in answers:
        assert [json.loads(frame)[1] for frame in received] == [str(n) for n in range(calls)]
