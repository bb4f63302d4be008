"""What a broker link costs per charge point: connect time, memory, publish latency.

Opens N channels (one MQTT client each, client id = cpId) through the gateway's own link against
a throwaway local Mosquitto, publishes one frame per channel, and closes them; prints one line per
link. No WebSockets are involved: this is the link alone.

    python -m bench.links --channels 2000 --links aiomqtt-plain,aiomqtt-mtls,awscrt-mtls
    python -m bench.links --tls-contexts 2000   # shared TLS context vs one per client (SDK builder)
    python -m bench.links --one-at-a-time 20     # latency of one CP: open, then one publish

Needs the `mosquitto` binary and the test extras (it borrows the test suite's broker and CA).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import time
from typing import Any

from gateway.links import LinkLost, build_link
from gateway.observability import Metrics
from gateway.settings import Settings
from tests.support.tls import STATIC_AWS_CREDENTIALS, TlsBroker, link_setup, make_pki

LINKS = ["aiomqtt-plain", "aiomqtt-mtls", "awscrt-plain", "awscrt-mtls", "awscrt-sigv4"]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


async def measure(name: str, broker: TlsBroker, channels: int, concurrency: int) -> str:
    link_under_test = link_setup(name, broker)
    settings = Settings(
        _env_file=None,
        mqtt_url=link_under_test.url,
        mqtt_timeout=30,
        broker_grace=30,
        log_level="WARNING",
        **link_under_test.settings,
    )
    link = build_link(settings, Metrics(), gateway_id=f"bench-{name}")
    await link.start()
    assert link.ready, f"{name}: the broker is not reachable"
    gate = asyncio.Semaphore(concurrency)

    async def deliver(payload: bytes) -> None:
        pass

    def on_lost(reason: LinkLost) -> None:
        raise AssertionError(f"{name}: channel lost ({reason})")

    async def open_one(n: int) -> Any:
        async with gate:
            return await link.open_channel(f"BENCH{n:05d}", "ocpp2.0.1", deliver, on_lost)

    before = rss_mib()
    started = time.perf_counter()
    opened = await asyncio.gather(*(open_one(n) for n in range(channels)))
    connect_seconds = time.perf_counter() - started
    memory = rss_mib() - before

    async def publish_one(channel: Any) -> float:
        sent = time.perf_counter()
        await channel.publish(b'[2,"1","Heartbeat",{}]')
        return time.perf_counter() - sent

    started = time.perf_counter()
    latencies = sorted(await asyncio.gather(*(publish_one(channel) for channel in opened)))
    publish_seconds = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.gather(*(channel.close() for channel in opened))
    close_seconds = time.perf_counter() - started
    await link.close()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return (
        f"{name:14} {channels} channels: connect+subscribe {channels / connect_seconds:7.0f}/s "
        f"({connect_seconds:5.2f} s), RSS +{memory:6.1f} MiB ({memory * 1024 / channels:5.1f} "
        f"KiB/channel), {channels} publishes in {publish_seconds:5.2f} s (PUBACK p50 "
        f"{p50:6.1f} ms, p99 {p99:6.1f} ms), close {close_seconds:5.2f} s"
    )


async def one_at_a_time(name: str, broker: TlsBroker, count: int) -> str:
    """Median latency of opening one channel (connect + SUBACK), then of one QoS 1 publish."""
    link_under_test = link_setup(name, broker)
    settings = Settings(
        _env_file=None,
        mqtt_url=link_under_test.url,
        log_level="WARNING",
        **link_under_test.settings,
    )
    link = build_link(settings, Metrics(), gateway_id=f"bench-{name}")
    await link.start()

    async def deliver(payload: bytes) -> None:
        pass

    opens, publishes = [], []
    for n in range(count):
        started = time.perf_counter()
        channel = await link.open_channel(f"ONE{n:03d}", "ocpp2.0.1", deliver, print)
        opened = time.perf_counter()
        await channel.publish(b'[2,"1","Heartbeat",{}]')
        publishes.append(time.perf_counter() - opened)
        opens.append(opened - started)
        await channel.close()
    await link.close()
    return (
        f"{name:14} one CP at a time ({count}): open p50 {statistics.median(opens) * 1000:6.1f} ms,"
        f" publish p50 {statistics.median(publishes) * 1000:5.2f} ms"
    )


def tls_context_cost(count: int, broker: TlsBroker) -> str:
    """CPU for `count` CRT clients: one shared TLS context, or one per client like the builders."""
    from awscrt import io, mqtt5
    from awsiot import mqtt5_client_builder

    pki = broker.pki
    group = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(group, io.DefaultHostResolver(group))
    started = time.perf_counter()
    for n in range(count):
        mqtt5_client_builder.mtls_from_path(
            cert_filepath=str(pki.client.cert),
            pri_key_filepath=str(pki.client.key),
            ca_filepath=str(pki.ca),
            endpoint="localhost",
            port=broker.mtls_port,
            client_id=f"c{n}",
            client_bootstrap=bootstrap,
            enable_metrics_collection=False,
        )
    per_client = time.perf_counter() - started
    started = time.perf_counter()
    options = io.TlsContextOptions.create_client_with_mtls_from_path(
        str(pki.client.cert), str(pki.client.key)
    )
    options.override_default_trust_store_from_path(None, str(pki.ca))
    shared = io.ClientTlsContext(options)
    for n in range(count):
        mqtt5.Client(
            mqtt5.ClientOptions(
                host_name="localhost",
                port=broker.mtls_port,
                bootstrap=bootstrap,
                tls_ctx=shared,
                connect_options=mqtt5.ConnectPacket(client_id=f"c{n}"),
                disable_metrics=True,
            )
        )
    once = time.perf_counter() - started
    return (
        f"{count} CRT clients built: TLS context per client (SDK builder) {per_client:.2f} s "
        f"({per_client / count * 1000:.2f} ms each); one shared context {once:.3f} s "
        f"({once / count * 1000:.3f} ms each)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.links", description=__doc__)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--links", default=",".join(LINKS))
    parser.add_argument("--tls-contexts", type=int, default=0, metavar="N")
    parser.add_argument("--one-at-a-time", type=int, default=0, metavar="N")
    arguments = parser.parse_args()
    os.environ.update(STATIC_AWS_CREDENTIALS)
    pki = make_pki()
    broker = TlsBroker(pki).start()
    try:
        if arguments.tls_contexts:
            print(tls_context_cost(arguments.tls_contexts, broker), flush=True)
            return
        for name in arguments.links.split(","):
            if arguments.one_at_a_time:
                line = await one_at_a_time(name, broker, arguments.one_at_a_time)
            else:
                line = await measure(name, broker, arguments.channels, arguments.concurrency)
            print(line, flush=True)
    finally:
        broker.stop()
        shutil.rmtree(pki.directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
