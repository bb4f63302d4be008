#!/usr/bin/env python3
"""How fast Thing-deleted events close connected charge points, through a real Mosquitto.

Starts a private Mosquitto and a gateway in this process (static registry, shared link, event
watcher on `$aws/events/thing/+/deleted`, re-validation off), connects `--cps` charge points
over WebSockets, then publishes one AWS IoT Thing-deleted event per charge point and times each
close (1008) from the moment its event was published.

    .venv/bin/python scripts/bench_registry_events.py --cps 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiomqtt
from websockets.asyncio.client import ClientConnection, connect

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from gateway.observability import configure_logging  # noqa: E402
from gateway.settings import THING_DELETED_TOPIC  # noqa: E402
from tests.support.gateway import running_gateway, ws_url  # noqa: E402
from tests.support.mosquitto import start_broker  # noqa: E402
from tests.support.waiting import until  # noqa: E402


def deleted_event(name: str) -> bytes:
    return json.dumps(
        {"eventType": "THING_EVENT", "operation": "DELETED", "thingName": name}
    ).encode()


async def run(cps: int) -> None:
    broker = start_broker()
    ids = [f"CP{number:05d}" for number in range(cps)]
    try:
        async with running_gateway(
            broker.url,
            registry="static",
            registry_ids=ids,
            registry_events_topic=THING_DELETED_TOPIC,
            registry_revalidate_interval=0,
            link_mode="shared",
            max_connections=cps + 10,
        ) as gateway:
            started = time.perf_counter()
            sockets: list[ClientConnection] = []
            for cp_id in ids:
                sockets.append(await connect(ws_url(gateway, cp_id), subprotocols=["ocpp2.0.1"]))  # type: ignore[list-item]
            await until(lambda: len(gateway.sessions) == cps, timeout=60, what="sessions")
            print(f"{cps} charge points connected in {time.perf_counter() - started:.2f} s")

            published: dict[str, float] = {}
            closed: dict[str, float] = {}

            async def watch(cp_id: str, ws: ClientConnection) -> None:
                await ws.wait_closed()
                closed[cp_id] = time.perf_counter()
                assert ws.close_code == 1008, (cp_id, ws.close_code, ws.close_reason)

            watchers = [
                asyncio.create_task(watch(i, ws)) for i, ws in zip(ids, sockets, strict=True)
            ]
            async with aiomqtt.Client(
                broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as client:
                first = time.perf_counter()
                for cp_id in ids:
                    published[cp_id] = time.perf_counter()
                    await client.publish(
                        f"$aws/events/thing/{cp_id}/deleted", deleted_event(cp_id), qos=1
                    )
                await asyncio.gather(*watchers)
                everything = time.perf_counter() - first

            latencies = sorted((closed[i] - published[i]) * 1000 for i in ids)
            quantiles = statistics.quantiles(latencies, n=100)
            print(
                f"all {cps} closed with 1008 in {everything:.2f} s ({cps / everything:,.0f}/s; "
                "events are published one at a time, each acknowledged)"
            )
            print(
                "event published -> close seen by the CP: "
                f"p50 {quantiles[49]:.1f} ms, p95 {quantiles[94]:.1f} ms, "
                f"p99 {quantiles[98]:.1f} ms, max {latencies[-1]:.1f} ms"
            )
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cps", type=int, default=1000, help="charge points connected")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    asyncio.run(run(args.cps))


if __name__ == "__main__":
    main()
