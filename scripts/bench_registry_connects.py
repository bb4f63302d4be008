#!/usr/bin/env python3
"""Charge points connected per second with the AWS registries (moto_server), mirror on and off.

    .venv/bin/python scripts/bench_registry_connects.py                 # every run, a few minutes
    .venv/bin/python scripts/bench_registry_connects.py --only warm --cps 1000
    .venv/bin/python scripts/bench_registry_connects.py --only cold --cps 10000
    .venv/bin/python scripts/bench_registry_connects.py --mtls --link-impl aiomqtt

- `warm`: the registry holds `--cps` ids (Things or table items); a gateway process is started
  and ready (mirror loaded), then `--cps` charge points dial with 500 handshakes in flight. Run
  for aws-iot and dynamodb, mirror off (a DescribeThing / GetItem per id) and on, and for
  allow-all (the gateway without a registry cost), on the shared link; mirror on and allow-all
  on the per-CP link too. Three runs each; the median is printed.
- `cold`: the registry holds `--cps` ids; the charge points dial as soon as the gateway listens,
  while its mirror is still loading (the ids it has not read yet are looked up one by one,
  batched for DynamoDB). Prints the seconds from the first dial to the last connect (target:
  all within 20 s) and when the mirror was loaded. Run for both links and both registries.

`GATEWAY_UNKNOWN_ID_RESPONSE=http-404` puts the registry check before the WebSocket upgrade,
so a connect counts only once the registry said "registered". Each CP closes once connected,
so 10,000 fit in the open-files limit. Everything is on loopback; moto_server stands in for AWS
(its latency is not AWS's: the figures compare configurations on one machine).

The broker link is the gateway's default (`--link-impl` picks another) over plain MQTT, or
with `--mtls` over mutual TLS, as to AWS IoT Core: each per-CP connection then pays a TLS
handshake with a client certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from websockets.asyncio.client import connect

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from gateway.registry.dynamodb import KEY_ATTRIBUTE  # noqa: E402
from gateway.settings import fastest_link_impl  # noqa: E402
from tests.support.aws import MotoServer  # noqa: E402
from tests.support.mosquitto import start_broker  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.tls import TlsBroker, link_setup, make_pki  # noqa: E402

REGION = "us-east-1"
TABLE = "charge-points"
IN_FLIGHT = 500


def fill_registry(server: MotoServer, ids: list[str]) -> None:
    """The ids as Things and as table items."""
    iot = boto3.client("iot", region_name=REGION, endpoint_url=server.url)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda cp_id: iot.create_thing(thingName=cp_id), ids))
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=server.url)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, len(ids), 25):
        requests: list[Any] = [
            {"PutRequest": {"Item": {KEY_ATTRIBUTE: {"S": cp_id}}}}
            for cp_id in ids[start : start + 25]
        ]
        dynamodb.batch_write_item(RequestItems={TABLE: requests})


def start_gateway(
    broker: dict[str, str], server: MotoServer, registry: str, mirror: bool, link: str
) -> tuple[subprocess.Popen[bytes], int]:
    """`broker`: the gateway's broker settings, as environment variables."""
    port = free_port()
    env = {
        **os.environ,
        **broker,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_LINK_MODE": link,
        "GATEWAY_REGISTRY": registry,
        "GATEWAY_REGISTRY_TABLE": TABLE,
        "GATEWAY_REGISTRY_MIRROR": str(mirror).lower(),
        "GATEWAY_REGISTRY_EVENTS_TOPIC": "",
        "GATEWAY_REGISTRY_REVALIDATE_INTERVAL": "0",
        "GATEWAY_UNKNOWN_ID_RESPONSE": "http-404",
        "GATEWAY_AWS_ENDPOINT_URL": server.url,
        "AWS_REGION": REGION,
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_PING_INTERVAL": "60",
    }
    log = tempfile.NamedTemporaryFile(prefix="bench-gateway-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"], env=env, cwd=REPO_ROOT, stdout=log, stderr=log
    )
    return process, port


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def wait_health(port: int, wanted: set[int], limit: float = 120.0) -> float:
    """Seconds until /health answers one of `wanted` (0: not listening)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if await asyncio.to_thread(health, port) in wanted:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"/health did not answer {wanted} within {limit} s")


async def dial(port: int, ids: list[str]) -> tuple[float, int]:
    """(seconds from the first dial to the last connect, failures)."""
    gate = asyncio.Semaphore(IN_FLIGHT)
    failures = 0

    async def one(cp_id: str) -> None:
        nonlocal failures
        async with gate:
            for _ in range(20):
                try:
                    async with connect(
                        f"ws://127.0.0.1:{port}/{cp_id}",
                        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                        open_timeout=30,
                    ):
                        return
                except Exception:
                    await asyncio.sleep(0.2)  # 503/1013 while the registry is busy: retry
            failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(cp_id) for cp_id in ids))
    return time.perf_counter() - started, failures


async def warm(broker: dict[str, str], server: MotoServer, ids: list[str]) -> None:
    print(f"\nwarm: {len(ids)} CPs, gateway ready before the first dial")
    runs = [("allow-all", False, "shared"), ("aws-iot", False, "shared")]
    runs += [("aws-iot", True, "shared"), ("dynamodb", False, "shared")]
    runs += [("dynamodb", True, "shared"), ("allow-all", False, "per-cp")]
    runs += [("aws-iot", True, "per-cp"), ("dynamodb", True, "per-cp")]
    for registry, mirror, link in runs:
        rates = []
        for _ in range(3):
            process, port = start_gateway(broker, server, registry, mirror, link)
            try:
                await wait_health(port, {200})
                seconds, failures = await dial(port, ids)
            finally:
                process.terminate()
                process.wait()
            rates.append(len(ids) / seconds)
        label = (
            f"{registry}, mirror {'on' if mirror else 'off'}"
            if registry != "allow-all"
            else registry
        )
        print(
            f"  {label:20} {link:7} {statistics.median(rates):6.0f} CPs/s median of 3 "
            f"({', '.join(f'{rate:.0f}' for rate in rates)}), failures {failures}"
        )


async def cold(broker: dict[str, str], server: MotoServer, ids: list[str]) -> None:
    print(f"\ncold: {len(ids)} CPs dialling as soon as the gateway listens, mirror on")
    for registry in ("dynamodb", "aws-iot"):
        for link in ("shared", "per-cp"):
            process, port = start_gateway(broker, server, registry, True, link)
            try:
                await wait_health(port, {200, 503})
                loaded = asyncio.create_task(wait_health(port, {200}))
                seconds, failures = await dial(port, ids)
                loaded_after = await loaded
            finally:
                process.terminate()
                process.wait()
            print(
                f"  {registry:9} {link:7} all connected in {seconds:5.1f} s "
                f"({len(ids) / seconds:4.0f} CPs/s), failures {failures}, "
                f"mirror loaded {loaded_after:.1f} s after the first dial"
            )


def mirror_memory(count: int) -> None:
    ids = {f"CP-{n:07d}-{os.urandom(4).hex()}" for n in range(count)}
    size = sys.getsizeof(ids) + sum(sys.getsizeof(cp_id) for cp_id in ids)
    length = len(next(iter(ids)))
    print(
        f"\nmirror of {count} ids of {length} characters: {size / 2**20:.1f} MiB (set and strings)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["warm", "cold", "memory"])
    parser.add_argument("--cps", type=int, default=None)
    parser.add_argument("--link-impl", choices=["awscrt", "aiomqtt"], default=fastest_link_impl())
    parser.add_argument("--mtls", action="store_true", help="mutual TLS to the broker")
    args = parser.parse_args()
    # Fake credentials for moto_server; no profile or config file can point at a real account.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_CONFIG_FILE="/dev/null"
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    if args.only in (None, "memory"):
        mirror_memory(100_000)
    if args.only == "memory":
        return
    count = args.cps or (1000 if args.only == "warm" else 10_000)
    ids = [f"CP-{n:05d}" for n in range(count)]
    pki = make_pki()
    broker = TlsBroker(pki).start() if args.mtls else start_broker()
    server = MotoServer()
    try:
        if isinstance(broker, TlsBroker):
            setup = link_setup(f"{args.link_impl}-mtls", broker)
            broker_env = {**setup.env, "GATEWAY_MQTT_URL": setup.url}
        else:
            broker_env = {"GATEWAY_LINK_IMPL": args.link_impl, "GATEWAY_MQTT_URL": broker.url}
        print(f"broker link: {args.link_impl}, {'mutual TLS' if args.mtls else 'plain MQTT'}")
        started = time.perf_counter()
        fill_registry(server, ids)
        print(f"{count} Things and items created in {time.perf_counter() - started:.0f} s")
        if args.only in (None, "warm"):
            await warm(broker_env, server, ids[:1000] if args.only is None else ids)
        if args.only in (None, "cold"):
            await cold(broker_env, server, ids)
    finally:
        server.stop()
        broker.stop()
        shutil.rmtree(pki.directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
