"""`ocpp-gateway`: run the gateway until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys

import structlog
from pydantic import ValidationError

from gateway.config_errors import (
    broker_url_problem,
    describe_validation_error,
    mask,
    secrets_in,
)
from gateway.links import build_link
from gateway.observability import Metrics, configure_logging
from gateway.registry import RegistryMisconfigured, build_registry
from gateway.registry.events import build_event_watcher
from gateway.registry.metrics import RegistryCacheCollector
from gateway.security import (
    AuthStatsCollector,
    SecurityMisconfigured,
    build_authenticator,
    build_server_ssl_context,
)
from gateway.server import Gateway
from gateway.settings import Settings

log = structlog.get_logger(__name__)

# Python's cycle collector runs a full pass each time the heap has grown by a quarter; while
# thousands of CPs connect, that is a pass over every connection's objects again and again (a
# quarter of the gateway's CPU when 10,000 CPs connect). Rarer young collections keep the heap
# bounded (reference counting frees nearly everything) at a fraction of the cost.
GC_THRESHOLDS = (50_000, 20, 10)


def default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def build_gateway(settings: Settings) -> Gateway:
    """Raises `SecurityMisconfigured` or `LinkMisconfigured` with the setting to fix."""
    ssl_context = build_server_ssl_context(settings)
    authenticator = build_authenticator(settings)
    metrics = Metrics()
    gateway_id = settings.gateway_id or default_gateway_id()
    registry = build_registry(settings)
    metrics.registry.register(RegistryCacheCollector(registry))
    if authenticator is not None:
        metrics.registry.register(AuthStatsCollector(authenticator))
    return Gateway(
        settings,
        registry=registry,
        link=build_link(settings, metrics, gateway_id),
        metrics=metrics,
        registry_events=build_event_watcher(settings, gateway_id),
        ssl_context=ssl_context,
        authenticator=authenticator,
        gateway_id=gateway_id,
    )


def misconfigured(message: str, settings: Settings | None = None) -> int:
    """Print one line about a setting that cannot be used, secrets masked; the exit code."""
    values = settings.model_dump().values() if settings is not None else ()
    line = mask(message, secrets_in(os.environ, values))
    print(f"ocpp-gateway: invalid configuration: {line}", file=sys.stderr)
    return 2


async def run(settings: Settings) -> int:
    url_problem = broker_url_problem(settings.mqtt_url)
    if url_problem is not None:
        return misconfigured(f"GATEWAY_MQTT_URL (or IOT_ENDPOINT): {url_problem}", settings)
    try:
        gateway = build_gateway(settings)
    except (ValueError, SecurityMisconfigured, RegistryMisconfigured) as exc:
        # ValueError: the links' and registries' own checks (`LinkMisconfigured` is one).
        return misconfigured(str(exc), settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await gateway.start()
    except (SecurityMisconfigured, RegistryMisconfigured) as exc:
        return misconfigured(str(exc), settings)
    except OSError as exc:
        log.error("gateway.cannot_listen", port=settings.port, error=str(exc))
        return 1
    await stop.wait()
    await gateway.stop()
    return 0


def tune_garbage_collector() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # what is loaded by now lives as long as the process: never scan it again


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in {"-h", "--help"}:
        print(
            "usage: ocpp-gateway\n\nConfigured by environment variables (GATEWAY_*, and the AWS "
            "sample's OCPP_PROTOCOLS, OCPP_GATEWAY_PORT, IOT_ENDPOINT, IOT_PORT, AWS_REGION);\n"
            "see the README's configuration table."
        )
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        return misconfigured(describe_validation_error(exc, Settings))
    configure_logging(settings.log_level, settings.log_format)
    tune_garbage_collector()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(settings))
    return uvloop.run(run(settings))
