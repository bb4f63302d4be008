"""Thousands of malformed frames, each with its documented answer, while another CP carries on.

The frames come from a seeded generator that knows, for each frame it makes, what the gateway
must answer (the oracle is the generator's, not `gateway.ocppj`'s). The fuzz runs on one broker
link: frame checks happen before any link is involved, and the other links' behaviour with
malformed frames is covered by test_bridging.py.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection, connect

from gateway.server import Gateway
from tests.support.gateway import ws_url
from tests.support.mqtt import MqttPeer

pytestmark = pytest.mark.integration

FRAMES = 2400
SEED = 20240611


@pytest.fixture
def link(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """One link only (overrides the conftest's four)."""
    monkeypatch.setenv("GATEWAY_LINK_MODE", "per-cp")
    monkeypatch.setenv("GATEWAY_LINK_IMPL", "aiomqtt")
    return "per-cp", "aiomqtt"


@dataclass(frozen=True)
class Case:
    frame: str
    error_code: str | None  # None: dropped without an answer (a malformed response)
    message_id: str = "-1"


def _valid_call(rng: random.Random, message_id: str) -> str:
    payload = {"n": rng.randint(-(10**6), 10**6), "s": rng.choice(["", "x", "Grüße", "🚗"])}
    return json.dumps([2, message_id, "DataTransfer", payload], ensure_ascii=rng.random() < 0.5)


def _case(rng: random.Random, n: int) -> Case:
    mid = f"f{n}"
    kind = rng.randrange(11)
    if kind == 0:  # cut short: never JSON
        whole = _valid_call(rng, mid)
        return Case(whole[: rng.randrange(len(whole) - 1)], "RpcFrameworkError")
    if kind == 1:  # JSON, but not an array
        value = rng.choice(["{}", '{"a":1}', "1", '"text"', "null", "true", "-0.5e3"])
        return Case(value, "RpcFrameworkError")
    if kind == 2:  # not JSON numbers
        constant = rng.choice(["NaN", "Infinity", "-Infinity"])
        return Case(f'[2,"{mid}","DataTransfer",{{"v":[1,{constant}]}}]', "FormatViolation")
    if kind == 3:  # nested too deeply to read, as arrays or objects, anywhere
        depth = rng.randint(3000, 6000)
        deep = (
            "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        )
        return Case(f'[2,"{mid}","DataTransfer",{{"d":{deep}}}]', "FormatViolation")
    if kind == 4:  # a lone surrogate in the id
        surrogate = f"\\u{rng.randint(0xD800, 0xDFFF):04x}"
        return Case(f'[2,"{mid}{surrogate}","Heartbeat",{{}}]', "RpcFrameworkError")
    if kind == 5:  # an id that is not a string of 1 to 36 characters
        bad_id = rng.choice(["7", '""', '"' + "i" * rng.randint(37, 200) + '"', "null", "{}"])
        return Case(f'[2,{bad_id},"Heartbeat",{{}}]', "RpcFrameworkError")
    if kind == 6:  # a CALL with the wrong number of elements
        extra = rng.choice(['[2,"{0}","Heartbeat"]', '[2,"{0}","Heartbeat",{{}},{{}}]'])
        return Case(extra.format(mid), "RpcFrameworkError", mid)
    if kind == 7:  # a payload that is not an object
        payload = rng.choice(["[]", "1", '"x"', "null", "true"])
        return Case(f'[2,"{mid}","Heartbeat",{payload}]', "FormatViolation", mid)
    if kind == 8:  # an unknown message type (5 and 6 are OCPP 2.1)
        return Case(
            f'[{rng.randint(7, 99)},"{mid}","Heartbeat",{{}}]', "MessageTypeNotSupported", mid
        )
    if kind == 9:  # an action that is not a non-empty string
        action = rng.choice(['""', "5", "null", "[]"])
        return Case(f'[2,"{mid}",{action},{{}}]', "RpcFrameworkError", mid)
    # a malformed response: dropped, never answered
    response = rng.choice(['[3,"{0}"]', '[3,"{0}",[]]', '[4,"{0}",1,"",{{}}]', '[4,"{0}","X"]'])
    return Case(response.format(mid), None, mid)


def malformed_frames(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [_case(rng, n) for n in range(count)]


async def round_trips(ws: ClientConnection, csms: MqttPeer, stop: asyncio.Event) -> int:
    """CP2 sends a CALL, the CSMS answers through MQTT, CP2 reads it; until `stop`."""
    done = 0
    while not stop.is_set():
        frame = f'[2,"c{done}","Heartbeat",{{}}]'
        await ws.send(frame)
        received = await csms.next()
        # Nothing of the fuzzing CP reaches the broker: the only /in frames are the control's.
        assert (received.topic, received.payload) == ("CP2/in", frame.encode())
        answer = f'[3,"c{done}",{{"currentTime":"2024-06-11T00:00:00Z"}}]'
        await csms.publish("CP2/out", answer)
        assert await asyncio.wait_for(ws.recv(), 5) == answer
        done += 1
    return done


async def test_malformed_frames_get_their_answers_while_another_cp_round_trips(
    gateway: Gateway, csms: MqttPeer
) -> None:
    cases = malformed_frames(FRAMES, SEED)
    assert sum(case.error_code is not None for case in cases) >= 2000
    stop = asyncio.Event()
    async with (
        connect(ws_url(gateway, "CP1"), subprotocols=["ocpp2.0.1"]) as fuzzed,
        connect(ws_url(gateway, "CP2"), subprotocols=["ocpp2.0.1"]) as control,
    ):
        control_task = asyncio.create_task(round_trips(control, csms, stop))
        try:
            for case in cases:
                await fuzzed.send(case.frame)
                if case.error_code is None:
                    continue  # if it were answered, the next answer read would not match
                answer = json.loads(await asyncio.wait_for(fuzzed.recv(), 5))
                assert answer[:3] == [4, case.message_id, case.error_code], case.frame[:200]
                assert isinstance(answer[3], str) and answer[4] == {}
            await fuzzed.send('[2,"last","Heartbeat",[]]')  # after the last unanswered frame
            assert json.loads(await asyncio.wait_for(fuzzed.recv(), 5))[1] == "last"
        finally:
            stop.set()
            completed = await control_task
    assert completed > 0, "the control CP made no round trip"
    metrics = gateway.metrics.render().decode()
    assert "ocpp_gateway_closes_total{" not in metrics  # no CP was closed
    assert 'ocpp_gateway_frames_dropped_total{direction="in"' not in metrics


def test_the_generator_is_seeded() -> None:
    assert malformed_frames(50, SEED) == malformed_frames(50, SEED)
