"""A minimal CSMS for benchmarks: answers every CALL on `+/in` with an empty CALLRESULT.

It runs entirely on the AWS CRT's threads (no asyncio, no JSON parsing, no validation), so it
stays out of the way when the gateway's own cost is measured. Not for real use: the processor
is the CSMS that validates and answers properly.

    python -m bench.responder --mqtt-url mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import signal
import threading

from awscrt import io, mqtt5

from gateway.links.broker_url import parse_broker_url
from gateway.links.nodelay import NagleSwitch

ANSWER_SUFFIX = b',{"currentTime":"2026-01-01T00:00:00Z","interval":60,"status":"Accepted"}]'


def answer_for(call: bytes) -> bytes | None:
    """`[2,"<id>",...]` -> `[3,"<id>",{...}]`, reading only the message id."""
    if not call.startswith(b"[2"):
        return None
    start = call.find(b'"')
    end = call.find(b'"', start + 1)
    if start < 0 or end < 0:
        return None
    return b"[3," + call[start : end + 1] + ANSWER_SUFFIX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--topic", default="$share/bench-responder/+/in")
    parser.add_argument("--client-id", default="bench-responder")
    args = parser.parse_args(argv)
    address = parse_broker_url(args.mqtt_url)
    connected = threading.Event()
    client: mqtt5.Client

    def on_publish(data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        answer = answer_for(bytes(packet.payload or b""))
        if answer is not None and packet.topic.endswith("/in"):
            client.publish(
                mqtt5.PublishPacket(
                    topic=packet.topic[:-2] + "out", payload=answer, qos=mqtt5.QoS.AT_LEAST_ONCE
                )
            )

    bootstrap = io.ClientBootstrap(
        io.EventLoopGroup(1), io.DefaultHostResolver(io.EventLoopGroup(1))
    )
    client = mqtt5.Client(
        mqtt5.ClientOptions(
            host_name=address.host,
            port=address.port,
            bootstrap=bootstrap,
            connect_options=mqtt5.ConnectPacket(
                client_id=args.client_id, keep_alive_interval_sec=60
            ),
            on_publish_callback_fn=on_publish,
            on_lifecycle_event_connection_success_fn=lambda _: connected.set(),
        )
    )
    client.start()
    if not connected.wait(10):
        raise SystemExit(f"bench responder: cannot connect to {args.mqtt_url}")
    client.subscribe(
        mqtt5.SubscribePacket([mqtt5.Subscription(args.topic, mqtt5.QoS.AT_LEAST_ONCE)])
    ).result(10)
    NagleSwitch(address.port).turn_off()
    print("bench responder: subscribed", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    client.stop()


if __name__ == "__main__":
    main()
