"""`ocpp-processor`: answer charge point calls over MQTT until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
from pydantic import ValidationError

from gateway.observability import configure_logging
from processor.service import Processor
from processor.settings import Settings

log = structlog.get_logger(__name__)

USAGE = """usage: ocpp-processor

Answers OCPP calls that charge points send through the gateway: subscribes to
$share/<group>/+/in on the MQTT broker, publishes answers to <cpId>/out and each
charge point's state, retained, to <cpId>/state.

Configured by environment variables (or .env), for example:
  PROCESSOR_MQTT_URL=mqtt://127.0.0.1:1883   broker (mqtt://host:port or mqtts://host:port)
  PROCESSOR_SHARE_GROUP=ocpp-processor       replicas in one group split the calls
  PROCESSOR_HEARTBEAT_INTERVAL=10            interval returned in BootNotification answers
  PROCESSOR_LOG_LEVEL=INFO                   DEBUG logs every message
See docs/processor.md for the full list."""


async def run(processor: Processor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await processor.run(stop)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0
    if argv:
        print(f"ocpp-processor: unexpected arguments {argv}; see --help", file=sys.stderr)
        return 2
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)  # before any logger is bound
        processor = Processor(settings)
    except (ValidationError, ValueError) as exc:
        print(f"ocpp-processor: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    log.info(
        "processor.starting",
        broker=settings.mqtt_url.rsplit("@", 1)[-1],
        share_group=settings.share_group or None,
        heartbeat_interval=settings.heartbeat_interval,
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(processor))
    else:
        uvloop.run(run(processor))
    return 0
