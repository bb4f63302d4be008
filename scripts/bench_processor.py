#!/usr/bin/env python3
"""Measure how many calls per second the processor answers through a real Mosquitto.

Starts a private Mosquitto (unless --broker-url is given) and `python -m processor` as a
separate process, publishes Heartbeat calls to `<cpId>/in` the way the gateway does (QoS 1,
`subprotocol` user property) from many charge point ids, and times the answers on `<cpId>/out`.

    .venv/bin/python scripts/bench_processor.py --calls 20000 --cps 200
    .venv/bin/python scripts/bench_processor.py --no-state      # without retained state documents
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from gateway.links.aiomqtt_connection import publish_properties  # noqa: E402
from gateway.links.broker_url import parse_broker_url  # noqa: E402
from tests.support.mosquitto import start_broker  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--cps", type=int, default=200, help="distinct charge point ids")
    parser.add_argument("--window", type=int, default=2000, help="calls in flight at most")
    parser.add_argument("--broker-url", help="use this broker instead of a private Mosquitto")
    parser.add_argument("--no-state", action="store_true", help="PROCESSOR_RECORD_STATE=false")
    return parser.parse_args()


def start_processor(broker_url: str, record_state: bool) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = Path(tempfile.mkstemp(prefix="processor-bench-", suffix=".log")[1])
    env = {
        **os.environ,
        "PROCESSOR_MQTT_URL": broker_url,
        "PROCESSOR_LOG_FORMAT": "json",
        "PROCESSOR_LOG_LEVEL": "INFO",
        "PROCESSOR_SHARE_GROUP": f"bench-{os.getpid()}",
        "PROCESSOR_RECORD_STATE": "true" if record_state else "false",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "processor"], env=env, cwd=REPO_ROOT, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 20
    while "broker.connected" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the processor did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    return process, log_path


async def measure(broker_url: str, calls: int, cps: int, window: int) -> dict[str, float]:
    address = parse_broker_url(broker_url)
    client = aiomqtt.Client(
        address.host,
        address.port,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=30,
        max_inflight_messages=window,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    client.pending_calls_threshold = window + 10
    properties = publish_properties((("subprotocol", "ocpp2.0.1"),))
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    async with client:
        await client.subscribe("+/out", qos=1)
        done = asyncio.Event()
        slots = asyncio.Semaphore(window)

        async def read() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                message_id = json.loads(message.payload)[1]
                latencies.append(time.perf_counter() - sent_at.pop(message_id))
                slots.release()
                if len(latencies) == calls:
                    done.set()
                    return

        reader = asyncio.create_task(read())
        publishes: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        for n in range(calls):
            await slots.acquire()
            message_id = f"bench-{n}"
            sent_at[message_id] = time.perf_counter()
            frame = f'[2,"{message_id}","Heartbeat",{{}}]'
            task = asyncio.create_task(
                client.publish(f"BENCH{n % cps}/in", frame, qos=1, properties=properties)
            )
            publishes.add(task)
            task.add_done_callback(publishes.discard)
        await asyncio.wait_for(done.wait(), timeout=300)
        elapsed = time.perf_counter() - started
        await reader
    latencies.sort()
    return {
        "calls": calls,
        "seconds": elapsed,
        "calls_per_second": calls / elapsed,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    args = parse_args()
    broker = None if args.broker_url else start_broker()
    broker_url = args.broker_url or (broker.url if broker else "")
    process, log_path = start_processor(broker_url, record_state=not args.no_state)
    try:
        asyncio.run(measure(broker_url, 500, args.cps, args.window))  # warm-up
        cpu_before = cpu_seconds(process.pid)
        result = asyncio.run(measure(broker_url, args.calls, args.cps, args.window))
        processor_cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        process.terminate()
        process.wait(timeout=15)
        if broker is not None:
            broker.stop()
    mode = "without state documents" if args.no_state else "with retained state documents"
    print(f"processor, {mode}, {args.cps} charge points, window {args.window}:")
    print(
        f"  {result['calls']:.0f} calls answered in {result['seconds']:.2f} s = "
        f"{result['calls_per_second']:.0f} calls/s; latency p50 "
        f"{result['latency_p50_ms']:.1f} ms, p99 {result['latency_p99_ms']:.1f} ms"
    )
    print(
        f"  processor CPU {processor_cpu:.2f} s "
        f"({100 * processor_cpu / result['seconds']:.0f}% of one core), "
        f"{1e6 * processor_cpu / result['calls']:.0f} µs per call"
    )
    print(f"  processor log: {log_path}")


if __name__ == "__main__":
    main()
