"""Broker faults under load: what a closed-loop fleet loses when Mosquitto stops, freezes or dies.

For each link and each fault, a fresh Mosquitto (sessions and retained messages persisted to
disk every second, as the local stack's broker does), a responder that answers every call
(a persistent MQTT session, as the processor has) and a gateway in a subprocess; CPs call
Heartbeat one after another over real WebSockets while the broker is:

- stopped: SIGTERM, started again after the outage (a clean restart: the broker saves first),
- frozen: SIGSTOP, SIGCONT after the outage (TCP stays open, nothing answers),
- killed: SIGKILL, started again after the outage (what it had not saved is gone).

Printed per run: frames the CPs sent, frames that arrived on `<cpId>/in` (once or more), frames
answered, frames lost (sent, never arrived), arrivals duplicated, CPs whose calls arrived out of
order, and CPs the gateway closed (with the codes).

    python -m bench.chaos                                  # every link, fault and outage (~12 min)
    python -m bench.chaos --links per-cp/aiomqtt --faults kill --outages 7 --cps 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.backoff import backoff_delays
from gateway.links.aiomqtt_connection import make_client
from gateway.links.broker_url import parse_broker_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
LINKS = ["per-cp/aiomqtt", "per-cp/awscrt", "shared/aiomqtt", "shared/awscrt"]
FAULTS = ["stop", "freeze", "kill"]
PERSISTENT_BROKER = ["persistence true", "autosave_interval 1"]
ANSWER_TIMEOUT = 30.0


@dataclass
class Tally:
    """What the CPs sent and what the responder saw, per CP in order."""

    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    arrived: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    answered: int = 0
    closed: Counter[int] = field(default_factory=Counter)

    def report(self) -> dict[str, object]:
        sent = sum(len(ids) for ids in self.sent.values())
        arrivals = sum(len(ids) for ids in self.arrived.values())
        unique = {cp: list(dict.fromkeys(ids)) for cp, ids in self.arrived.items()}
        arrived = sum(len(ids) for ids in unique.values())
        lost = sum(len(set(ids) - set(unique.get(cp, []))) for cp, ids in self.sent.items())
        out_of_order = sum(1 for cp, ids in unique.items() if ids != sorted(ids, key=_number))
        return {
            "sent": sent,
            "arrived": arrived,
            "answered": self.answered,
            "lost": lost,
            "duplicated": arrivals - arrived,
            "cps_out_of_order": out_of_order,
            "cps_closed": sum(self.closed.values()),
            "close_codes": dict(self.closed),
        }


def _number(message_id: str) -> int:
    return int(message_id.rsplit(".", 1)[1])


class Responder:
    """Answers every call on `+/in`; a persistent session, so calls wait for it in an outage."""

    def __init__(self, broker_url: str, tally: Tally) -> None:
        self._address = parse_broker_url(broker_url)
        self._tally = tally
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        delays = backoff_delays(initial=0.1, maximum=0.5)
        while True:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 600
            client = make_client(
                self._address,
                "chaos-responder",
                5.0,
                30,
                # Never a clean start: Mosquitto saves no session that began with one.
                clean_start=False,
                properties=properties,
            )
            try:
                async with client:
                    await client.subscribe("+/in", qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        await self._answer(client, message)
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(next(delays))

    async def _answer(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        cp_id = message.topic.value.split("/", 1)[0]
        payload = message.payload if isinstance(message.payload, bytes) else b"[]"
        call = json.loads(payload)
        self._tally.arrived[cp_id].append(call[1])
        answer = json.dumps([3, call[1], {"currentTime": "2026-01-01T00:00:00Z"}])
        # Not awaited one by one: answers leave in order, acknowledgements come in parallel.
        task = asyncio.create_task(client.publish(f"{cp_id}/out", answer, qos=1))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def closed_loop_cp(url: str, cp_id: str, stop: asyncio.Event, tally: Tally) -> None:
    """Call Heartbeat one after another until `stop`; record what the gateway does."""
    try:
        async with connect(f"{url}/{cp_id}", subprotocols=["ocpp2.0.1"], open_timeout=30) as ws:
            for number in itertools.count(1):
                if stop.is_set():
                    return
                message_id = f"{cp_id}.{number}"
                tally.sent[cp_id].append(message_id)
                await ws.send(json.dumps([2, message_id, "Heartbeat", {}]))
                with contextlib.suppress(TimeoutError):
                    while (
                        json.loads(await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT))[1]
                        != message_id
                    ):
                        pass
                    tally.answered += 1
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else 1006
        tally.closed[code] += 1
    except InvalidStatus as refused:
        tally.closed[refused.response.status_code] += 1


@dataclass
class Outage:
    fault: str
    seconds: float

    def begin(self, broker: MosquittoProcess) -> None:
        assert broker.process is not None
        if self.fault == "freeze":
            broker.process.send_signal(signal.SIGSTOP)
        elif self.fault == "kill":
            broker.process.kill()
            broker.process.wait()
            broker.process = None
        else:
            broker.stop()

    def end(self, broker: MosquittoProcess) -> None:
        if self.fault == "freeze":
            assert broker.process is not None
            broker.process.send_signal(signal.SIGCONT)
        else:
            broker.start()


async def run_fault(
    gateway_url: str,
    broker: MosquittoProcess,
    outage: Outage,
    cps: int,
    *,
    before: float = 3.0,
    after: float = 8.0,
    id_prefix: str = "CHAOS",
) -> dict[str, object]:
    """The closed loop through the gateway at `gateway_url`, with `outage` in the middle."""
    tally = Tally()
    responder = Responder(broker.url, tally)
    answering = asyncio.create_task(responder.run())
    stop = asyncio.Event()
    try:
        await asyncio.wait_for(responder.subscribed.wait(), 10)
        loops = [
            asyncio.create_task(closed_loop_cp(gateway_url, f"{id_prefix}{n}", stop, tally))
            for n in range(cps)
        ]
        await asyncio.sleep(before)
        await asyncio.to_thread(outage.begin, broker)
        await asyncio.sleep(outage.seconds)
        await asyncio.to_thread(outage.end, broker)
        await asyncio.sleep(after)
        stop.set()
        await asyncio.wait(loops, timeout=ANSWER_TIMEOUT + 5)
    finally:
        if outage.fault == "freeze" and broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    return tally.report()


def gateway_figures(gateway_url: str) -> dict[str, int]:
    """Frames the broker acknowledged to the gateway, and frames the gateway published again."""
    import urllib.request

    http_url = gateway_url.replace("ws://", "http://") + "/metrics"
    with urllib.request.urlopen(http_url, timeout=5) as answer:
        text = answer.read().decode()
    wanted = {
        'ocpp_gateway_frames_total{direction="in"}': "acked_by_broker",
        "ocpp_gateway_frames_resent_total": "resent",
    }
    figures = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            figures[wanted[name]] = int(float(value))  # counters: whole numbers
    return figures


@contextlib.contextmanager
def gateway_process(broker_url: str, link: str, grace: float) -> Iterator[str]:
    mode, impl = link.split("/")
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_MQTT_URL": broker_url,
        "GATEWAY_LINK_MODE": mode,
        "GATEWAY_LINK_IMPL": impl,
        "GATEWAY_REGISTRY": "allow-all",
        "GATEWAY_BROKER_GRACE": str(grace),
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"], env=env, cwd=REPO_ROOT, stderr=subprocess.DEVNULL
    )
    try:
        _wait_ready(port, process)
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        process.kill()


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited at start")
        url = f"http://127.0.0.1:{port}/health"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the gateway did not become ready")


@contextlib.asynccontextmanager
async def persistent_broker() -> AsyncIterator[MosquittoProcess]:
    broker = MosquittoProcess(extra_config=[*PERSISTENT_BROKER])
    broker.extra_config.append(f"persistence_location {broker.workdir}/")
    broker.start()
    try:
        yield broker
    finally:
        if broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)
        broker.stop()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", default=",".join(LINKS))
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--outages", default="2,7,15", help="seconds, comma-separated")
    parser.add_argument("--cps", type=int, default=100)
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args(argv)
    rows = []
    for link in args.links.split(","):
        for fault in args.faults.split(","):
            for seconds in map(float, args.outages.split(",")):
                async with persistent_broker() as broker:
                    with gateway_process(broker.url, link, args.grace) as url:
                        figures = await run_fault(url, broker, Outage(fault, seconds), args.cps)
                        figures.update(gateway_figures(url))
                row = {"link": link, "fault": fault, "outage_s": seconds, **figures}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(table(rows, args.grace))


def table(rows: list[dict[str, object]], grace: float) -> str:
    columns = [
        "link",
        "fault",
        "outage_s",
        "sent",
        "acked_by_broker",
        "arrived",
        "answered",
        "lost",
        "duplicated",
        "resent",
        "cps_out_of_order",
        "cps_closed",
    ]
    lines = [
        f"grace {grace:g} s",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += [
        "| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
