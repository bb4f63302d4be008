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
from processor.status_page import StatusPage

log = structlog.get_logger(__name__)

USAGE = """usage: ocpp-processor

Answers OCPP calls that charge points send through the gateway: subscribes to
$share/<group>/+/in on the MQTT broker, publishes answers to <cpId>/out and each
charge point's state, retained, to <cpId>/state.

Configured by environment variables (or .env), for example:
  PROCESSOR_MQTT_URL=mqtt://127.0.0.1:1883   broker (mqtt://host:port or mqtts://host:port)
  PROCESSOR_SHARE_GROUP=ocpp-processor       replicas in one group split the calls
  PROCESSOR_HEARTBEAT_INTERVAL=10            interval returned in BootNotification answers
  PROCESSOR_HTTP_PORT=8000                   live status page on http://127.0.0.1:8000 (0: off)
  PROCESSOR_LOG_LEVEL=INFO                   DEBUG logs every message
See docs/processor.md for the full list."""


async def run(processor: Processor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settings = processor.settings
    page = None
    if settings.http_port:
        page = StatusPage(processor.status, settings.http_host, settings.http_port)
        try:
            await page.start()
        except OSError as exc:
            log.error(
                "status_page.cannot_listen",
                port=settings.http_port,
                error=str(exc),
                hint="set PROCESSOR_HTTP_PORT to a free port, or 0 to turn the page off",
            )
            page = None
    try:
        await processor.run(stop)
    finally:
        if page is not None:
            await page.close()


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
