"""`python -m gateway.links.check`: connect once to the broker the way the gateway would.

Reads the gateway's own configuration (environment and `.env`), then, with the configured link,
does for one charge point what the gateway does for every one: connect with client id = cpId,
subscribe to its outbound topic (acknowledged), publish a Heartbeat CALL to its inbound topic
(acknowledged). Prints one line per step and exits 0 when all passed, 1 when the broker could not
be used, 2 when the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from pydantic import ValidationError

from gateway.links import BrokerUnavailable, LinkLost, LinkMisconfigured, build_link
from gateway.links.broker_url import parse_broker_url
from gateway.observability import Metrics, configure_logging
from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id
from gateway.settings import Settings

DEFAULT_CP_ID = "GatewayCheck"


def say(line: str) -> None:
    print(line, flush=True)  # in order with the log lines on stderr


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.links.check",
        description="Connect once to the configured broker as one charge point would.",
    )
    parser.add_argument(
        "--cp-id",
        default=DEFAULT_CP_ID,
        help=f"client id and topic prefix to use (default {DEFAULT_CP_ID}); "
        "the broker's policy must allow it, as for a real charge point",
    )
    parser.add_argument(
        "--answer-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also wait this long for an answer on the outbound topic (needs the processor)",
    )
    return parser.parse_args(argv)


async def check(settings: Settings, cp_id: str, answer_timeout: float) -> bool:
    """Run the steps, printing one line each; True when every step passed."""
    address = parse_broker_url(settings.mqtt_url)
    broker = f"{'mqtts' if address.tls else 'mqtt'}://{address.host}:{address.port}"
    say(f"..  broker {broker} via {settings.link_impl.value} ({settings.mqtt_auth.value})")
    link = build_link(settings, Metrics(), gateway_id="check")
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def deliver(payload: bytes) -> None:
        await answers.put(payload)

    def on_lost(reason: LinkLost) -> None:
        say(f"!!  the broker ended the connection: {reason.value}")

    await link.start()
    async with contextlib.AsyncExitStack() as closing:  # the channel first, then the link
        closing.push_async_callback(link.close)
        if not link.ready:
            say("FAILED  the broker cannot be reached; the log line above says why")
            return False
        say("OK  the broker is reachable")
        try:
            channel = await link.open_channel(cp_id, "ocpp2.0.1", deliver, on_lost)
        except BrokerUnavailable as exc:
            say(f"FAILED  connecting as {cp_id}: {exc}")
            return False
        closing.push_async_callback(channel.close)
        out_topic = settings.topic_out.format(cp_id=cp_id)
        in_topic = settings.topic_in.format(cp_id=cp_id)
        say(f"OK  connected as {cp_id}, subscribed to {out_topic}")
        frame = f'[2,"check-{int(time.time())}","Heartbeat",{{}}]'
        started = time.monotonic()
        try:
            await channel.publish(frame.encode())
        except BrokerUnavailable as exc:
            say(f"FAILED  publishing to {in_topic}: {exc}")
            return False
        milliseconds = (time.monotonic() - started) * 1000
        say(f"OK  published a Heartbeat to {in_topic}, acknowledged in {milliseconds:.0f} ms")
        if answer_timeout > 0:
            try:
                answer = await asyncio.wait_for(answers.get(), answer_timeout)
            except TimeoutError:
                say(
                    f"FAILED  no answer on {out_topic} within {answer_timeout} s "
                    "(is the processor running?)"
                )
                return False
            say(f"OK  answer on {out_topic}: {answer.decode(errors='replace')}")
    return True


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    if not is_valid_cp_id(arguments.cp_id):
        print(f"invalid --cp-id: {describe_invalid_cp_id(arguments.cp_id)}", file=sys.stderr)
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging("WARNING", "console")
    try:
        passed = asyncio.run(check(settings, arguments.cp_id, arguments.answer_timeout))
    except LinkMisconfigured as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    say("OK" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
