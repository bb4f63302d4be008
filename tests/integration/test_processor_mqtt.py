"""The processor against a real Mosquitto: answers, retained state, replicas, broker restarts.

Every test has a broker of its own: any other processor on a shared broker (the local stack's,
for one) would answer the same calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.mosquitto import MosquittoProcess, start_broker
from tests.support.mqtt import MqttPeer, Received, mqtt_peer
from tests.support.processor import running_processor, send_frame
from tests.support.waiting import until

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

BOOT = (
    '[2,"0678cb2a-a7a2-42bc-8037-d01164e77ac6","BootNotification",{"chargingStation":'
    '{"model":"ABC 123 XYZ","vendorName":"Acme Electrical Systems","firmwareVersion":"10.9.8.ABC",'
    '"serialNumber":"CP1234567890A01","modem":{"iccid":"891004234814455936F",'
    '"imsi":"310410123456789"}},"reason":"PowerUp"}]'
)
REPORTED = json.loads(BOOT)[3]


def heartbeat(message_id: str) -> str:
    return f'[2,"{message_id}","Heartbeat",{{}}]'


async def next_json(peer: MqttPeer) -> tuple[str, list[Any]]:
    received = await peer.next(timeout=10)
    frame = json.loads(received.payload)
    assert isinstance(frame, list)
    return received.topic, frame


async def retained_state(broker_url: str, cp_id: str) -> dict[str, object]:
    async with mqtt_peer(broker_url, f"{cp_id}/state") as reader:
        received = await reader.next(timeout=10)
    document = json.loads(received.payload)
    assert isinstance(document, dict)
    return document


async def test_boot_is_answered_and_state_is_retained(private_broker: MosquittoProcess) -> None:
    async with (
        running_processor(private_broker.url, heartbeat_interval=10),
        mqtt_peer(private_broker.url, "CPA1/out") as gateway_side,
    ):
        await send_frame(gateway_side, "CPA1", BOOT)
        topic, answer = await next_json(gateway_side)
        assert topic == "CPA1/out"
        assert answer[:2] == [3, "0678cb2a-a7a2-42bc-8037-d01164e77ac6"]
        assert answer[2]["status"] == "Accepted"
        assert answer[2]["interval"] == 10
        assert answer[2]["currentTime"].endswith("Z")

        state = await retained_state(private_broker.url, "CPA1")
        assert state["chargePointId"] == "CPA1"
        assert state["reported"] == REPORTED
        assert state["subprotocol"] == "ocpp2.0.1"
        assert state["bootedAt"] == answer[2]["currentTime"]


async def test_ocpp16_calls_are_answered_in_16_terms(private_broker: MosquittoProcess) -> None:
    async with (
        running_processor(private_broker.url),
        mqtt_peer(private_broker.url, "CPA2/out") as gateway_side,
    ):
        await send_frame(
            gateway_side,
            "CPA2",
            '[2,"b1","BootNotification",{"chargePointVendor":"Acme","chargePointModel":"M1"}]',
            subprotocol="ocpp1.6",
        )
        _, answer = await next_json(gateway_side)
        current_time = answer[2]["currentTime"]
        assert answer == [
            3,
            "b1",
            {"currentTime": current_time, "interval": 10, "status": "Accepted"},
        ]
        await send_frame(gateway_side, "CPA2", '[2,"b2","BootNotification",{}]', "ocpp1.6")
        _, refused = await next_json(gateway_side)
        assert refused[:3] == [4, "b2", "OccurenceConstraintViolation"]


async def test_answers_keep_the_order_of_the_calls(private_broker: MosquittoProcess) -> None:
    ids = [f"hb-{n}" for n in range(300)]
    async with (
        running_processor(private_broker.url),
        mqtt_peer(private_broker.url, "CPA3/out") as gateway_side,
    ):
        for message_id in ids:
            await send_frame(gateway_side, "CPA3", heartbeat(message_id))
        answered = [(await next_json(gateway_side))[1][1] for _ in ids]
    assert answered == ids


async def test_bad_input_is_answered_or_dropped_and_loses_nothing(
    private_broker: MosquittoProcess,
) -> None:
    async with (
        running_processor(private_broker.url) as processor,
        mqtt_peer(private_broker.url, "CPA4/out") as gateway_side,
    ):
        await send_frame(gateway_side, "CPA4", b"\xff\xfe not text")
        await send_frame(gateway_side, "CPA4", "not json")
        await send_frame(gateway_side, "CPA4", '[3,"from-cp",{"status":"Accepted"}]')
        await send_frame(gateway_side, "CPA4", '[4,"from-cp2","InternalError","oops",{}]')
        await send_frame(gateway_side, "CPA4", '[2,"u1","MadeUpAction",{}]')
        await send_frame(gateway_side, "CPA4", heartbeat("after-garbage"), subprotocol=None)
        _, first = await next_json(gateway_side)
        _, second = await next_json(gateway_side)
        assert first[:3] == [4, "u1", "NotImplemented"]
        assert second[:2] == [3, "after-garbage"]
        assert processor.counters.invalid == 2
        assert processor.counters.responses == 2


async def test_two_replicas_answer_each_call_exactly_once(private_broker: MosquittoProcess) -> None:
    calls = 200
    async with (
        running_processor(private_broker.url, share_group="pair") as first,
        running_processor(private_broker.url, share_group="pair") as second,
        mqtt_peer(private_broker.url, "+/out") as gateway_side,
    ):
        for n in range(calls):
            await send_frame(gateway_side, f"CPB{n % 20}", heartbeat(f"c{n}"))
        answers: list[Received] = [await gateway_side.next(timeout=10) for _ in range(calls)]
        await until(lambda: first.counters.answered + second.counters.answered >= calls)
        total = first.counters.answered + second.counters.answered
    ids = [json.loads(answer.payload)[1] for answer in answers]
    assert sorted(ids) == sorted(f"c{n}" for n in range(calls))
    assert total == calls  # every answer published was received: no call answered twice
    assert first.counters.answered > 0
    assert second.counters.answered > 0


async def test_a_restarted_processor_keeps_what_was_recorded(
    private_broker: MosquittoProcess,
) -> None:
    async with (
        running_processor(private_broker.url),
        mqtt_peer(private_broker.url, "CPA5/out") as gateway_side,
    ):
        await send_frame(gateway_side, "CPA5", BOOT)
        await next_json(gateway_side)
    async with (
        running_processor(private_broker.url) as restarted,
        mqtt_peer(private_broker.url, "CPA5/out") as gateway_side,
    ):
        await until(lambda: restarted.state_of("CPA5") is not None, what="the retained state")
        await send_frame(gateway_side, "CPA5", heartbeat("after-restart"))
        _, answer = await next_json(gateway_side)
        await until(lambda: (restarted.state_of("CPA5") or {}).get("lastHeartbeat") is not None)
    state = await retained_state(private_broker.url, "CPA5")
    assert state["reported"] == REPORTED
    assert state["lastHeartbeat"] == answer[2]["currentTime"]


async def test_answers_again_after_the_broker_restarts(private_broker: MosquittoProcess) -> None:
    async with running_processor(private_broker.url) as processor:
        async with mqtt_peer(private_broker.url, "CPA6/out") as gateway_side:
            await send_frame(gateway_side, "CPA6", heartbeat("before"))
            assert (await next_json(gateway_side))[1][1] == "before"
        private_broker.restart()
        await until(lambda: processor.connections == 2, timeout=15, what="a reconnection")
        async with mqtt_peer(private_broker.url, "CPA6/out") as gateway_side:
            await send_frame(gateway_side, "CPA6", heartbeat("after"))
            assert (await next_json(gateway_side))[1][1] == "after"


async def test_calls_published_while_it_reconnects_after_a_kill_9_are_answered(
    tmp_path: Path,
) -> None:
    """The local stack's broker keeps sessions (saved every second) and its one processor
    subscribes without a share group (Mosquitto forgets shared subscriptions when it restarts):
    the session survives a kill -9, so calls published before it has reconnected wait for it."""
    broker = start_broker(
        ["persistence true", f"persistence_location {tmp_path}/", "autosave_interval 1"]
    )
    try:
        async with running_processor(broker.url, share_group="") as processor:
            await asyncio.sleep(3.0)  # the processor's session is on disk (saved every 1-2 s)
            assert broker.process is not None
            broker.process.kill()
            broker.process.wait()
            broker.process = None
            await asyncio.sleep(1.0)  # the processor backs off meanwhile
            broker.start()
            async with mqtt_peer(broker.url, "CPA7/out") as gateway_side:
                for n in range(20):
                    await send_frame(gateway_side, "CPA7", heartbeat(f"while-away-{n}"))
                answered = [(await next_json(gateway_side))[1][1] for _ in range(20)]
            assert answered == [f"while-away-{n}" for n in range(20)]
            assert processor.connections == 2
    finally:
        broker.stop()


def test_sigterm_stops_the_service_cleanly(
    private_broker: MosquittoProcess, tmp_path: Path
) -> None:
    log_path = tmp_path / "processor.log"
    env = {
        **os.environ,
        "PROCESSOR_MQTT_URL": private_broker.url,
        "PROCESSOR_LOG_FORMAT": "json",
        "PROCESSOR_SHARE_GROUP": "sigterm",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "processor"],
            env=env,
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while "broker.connected" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the processor did not connect"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "processor.stopped" in log_path.read_text()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:1883", "use mqtt://host:port or mqtts://host:port"),
        ("mqtt://", "has no host name"),
        ("mqtt://127.0.0.1:notaport", "has an invalid port"),
    ],
)
def test_a_wrong_broker_url_is_refused_with_a_clear_message(
    url: str, expected: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "processor"],
        env={**os.environ, "PROCESSOR_MQTT_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
