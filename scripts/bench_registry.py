"""Registry figures: file parsing and reload, cached lookups, cold AWS IoT and DynamoDB lookups.

    python scripts/bench_registry.py [--ids 20000] [--aws-lookups 2000]

The AWS part runs against a local `moto_server` (pip install 'moto[server]'), so its figures
measure the gateway's side (thread pool, single flight, cache), not AWS latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3

from gateway.registry.aws_iot import AwsIotRegistry
from gateway.registry.dynamodb import KEY_ATTRIBUTE, DynamoDbRegistry
from gateway.registry.file import FileRegistry
from gateway.registry.things_cli import main as things_cli
from gateway.registry.things_file import parse_things

REGION = "us-east-1"


def report(name: str, count: int, seconds: float, unit: str = "ids") -> None:
    rate = count / seconds if seconds else float("inf")
    print(f"{name:<50} {count:>8} {unit:<8} {seconds * 1000:>9.1f} ms {rate:>12,.0f} {unit}/s")


def registry_text(ids: int) -> str:
    return "# bench\n" + "".join(f"CP{number:06d} hall-{number % 10}\n" for number in range(ids))


async def bench_file(path: Path, text: str, ids: int) -> None:
    started = time.perf_counter()
    parsed = parse_things(text)
    report("parse_things", len(parsed.ids), time.perf_counter() - started)

    registry = FileRegistry(path)
    started = time.perf_counter()
    await registry.reload_if_changed()
    report(
        "FileRegistry first load (read + parse)", len(registry.ids), time.perf_counter() - started
    )

    checks = 10_000
    started = time.perf_counter()
    for _ in range(checks):
        await registry.reload_if_changed()
    report(
        "FileRegistry check of an unchanged file", checks, time.perf_counter() - started, "checks"
    )

    lookups = 200_000
    started = time.perf_counter()
    for number in range(lookups):
        await registry.is_registered(f"CP{number % (2 * ids):06d}")
    report("FileRegistry.is_registered", lookups, time.perf_counter() - started, "lookups")

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        things_cli(["--file", str(path), "add", "NEW1"])
    report(f"ocpp-things add (file of {ids} ids)", 1, time.perf_counter() - started, "edits")


async def bench_aws(
    registry: AwsIotRegistry | DynamoDbRegistry, operation: str, lookups: int, registered: int
) -> None:
    await registry.start()
    calls = 0
    name = "aws-iot" if isinstance(registry, AwsIotRegistry) else "dynamodb"

    def count(**_: object) -> None:
        nonlocal calls
        calls += 1

    registry.client.meta.events.register(f"before-call.{operation}", count)
    ids = [f"CP{number:06d}" for number in range(lookups)]
    started = time.perf_counter()
    answers = await asyncio.gather(*(registry.is_registered(cp_id) for cp_id in ids))
    report(
        f"{name} cold lookups, {registry.max_concurrency} in flight",
        lookups,
        time.perf_counter() - started,
        "lookups",
    )
    assert sum(answers) == registered

    before = calls
    started = time.perf_counter()
    same = await asyncio.gather(*(registry.is_registered("CP999999") for _ in range(5000)))
    report(
        f"{name} 5000 concurrent lookups of one id",
        5000,
        time.perf_counter() - started,
        "lookups",
    )
    print(f"{'  calls to AWS they caused':<50} {calls - before:>8}")
    assert not any(same)

    started = time.perf_counter()
    for cp_id in ids:
        await registry.is_registered(cp_id)
    report(f"{name} cached lookups", lookups, time.perf_counter() - started, "lookups")
    await registry.close()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if binary is None:
        raise SystemExit("moto_server not found: pip install 'moto[server]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Registry benchmark figures.")
    parser.add_argument("--ids", type=int, default=20_000, help="ids in the registry file")
    parser.add_argument("--aws-lookups", type=int, default=2_000, help="distinct ids looked up")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path, text = Path(directory) / "things.txt", registry_text(args.ids)
        path.write_text(text)
        asyncio.run(bench_file(path, text, args.ids))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    with moto_server() as endpoint:
        client = boto3.client("iot", region_name=REGION, endpoint_url=endpoint)
        registered = args.aws_lookups // 2
        for number in range(registered):
            client.create_thing(thingName=f"CP{number:06d}")
        iot = AwsIotRegistry(region=REGION, endpoint_url=endpoint)
        asyncio.run(bench_aws(iot, "iot.DescribeThing", args.aws_lookups, registered))

        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
        dynamodb.create_table(
            TableName="charge-points",
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for number in range(registered):
            dynamodb.put_item(
                TableName="charge-points", Item={KEY_ATTRIBUTE: {"S": f"CP{number:06d}"}}
            )
        table = DynamoDbRegistry(table="charge-points", region=REGION, endpoint_url=endpoint)
        asyncio.run(bench_aws(table, "dynamodb.GetItem", args.aws_lookups, registered))


if __name__ == "__main__":
    main()
