"""MQTT-only ceiling: virtual charge points calling the bench responder through the broker.

Each virtual CP publishes a CALL on `<id>/in` and waits for the answer on `<id>/out` before the
next one (closed loop), as a CP behind the gateway would, but without WebSockets or a gateway.

    python -m bench.mqtt_ceiling --mqtt-url mqtt://127.0.0.1:1883 --count 1000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

from awscrt import io, mqtt5

from gateway.links.broker_url import parse_broker_url
from gateway.links.nodelay import NagleSwitch
from simulator.fleet.latency import LatencyHistogram


async def run(mqtt_url: str, count: int, duration: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    address = parse_broker_url(mqtt_url)
    waiting: dict[str, asyncio.Future[None]] = {}
    connected = loop.create_future()

    def answered(topic: str) -> None:
        future = waiting.pop(topic[:-4], None)
        if future is not None and not future.done():
            future.set_result(None)

    def on_publish(data: mqtt5.PublishReceivedData) -> None:
        loop.call_soon_threadsafe(answered, data.publish_packet.topic)

    group = io.EventLoopGroup(1)
    client = mqtt5.Client(
        mqtt5.ClientOptions(
            host_name=address.host,
            port=address.port,
            bootstrap=io.ClientBootstrap(group, io.DefaultHostResolver(group)),
            connect_options=mqtt5.ConnectPacket(client_id="bench-mqtt-ceiling"),
            on_publish_callback_fn=on_publish,
            on_lifecycle_event_connection_success_fn=lambda _: loop.call_soon_threadsafe(
                connected.set_result, None
            ),
        )
    )
    client.start()
    await asyncio.wait_for(connected, 10)
    await asyncio.wrap_future(
        client.subscribe(
            mqtt5.SubscribePacket([mqtt5.Subscription("+/out", mqtt5.QoS.AT_LEAST_ONCE)])
        )
    )
    NagleSwitch(address.port).turn_off()
    latencies = LatencyHistogram()
    calls = 0
    stop_at = time.monotonic() + duration

    async def virtual_cp(cp_id: str) -> None:
        nonlocal calls
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            answer = loop.create_future()
            waiting[cp_id] = answer
            started = time.monotonic()
            client.publish(
                mqtt5.PublishPacket(
                    topic=f"{cp_id}/in",
                    payload=f'[2,"{n}","Heartbeat",{{}}]'.encode(),
                    qos=mqtt5.QoS.AT_LEAST_ONCE,
                )
            )
            await asyncio.wait_for(answer, 10)
            latencies.record(time.monotonic() - started)
            calls += 1

    started = time.monotonic()
    await asyncio.gather(*(virtual_cp(f"MQTTBENCH{n:05d}") for n in range(count)))
    elapsed = time.monotonic() - started
    client.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1),
        "p50_ms": _ms(latencies.percentile(50)),
        "p99_ms": _ms(latencies.percentile(99)),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.mqtt_url, args.count, args.duration))))


if __name__ == "__main__":
    main()
