"""Whether the broker is reachable and answering, seen through one connection of the gateway's own.

The connection publishes a small message under the gateway's topic every half `mqtt_timeout`: a
broker that accepts TCP but stopped answering (frozen, overloaded) leaves that publish
unacknowledged, which ends the connection as stalled, so readiness drops within about one and a
half timeouts instead of one keep-alive. The per-CP link also publishes and reads its claims
through the probe's connection (`per_cp.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import structlog

from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.broker_url import parse_broker_url
from gateway.links.connection import (
    BrokerConnection,
    ConnectionOptions,
    Down,
    LinkError,
)
from gateway.links.retained import RetainedReader
from gateway.links.tls import TlsConfigError, diagnose_tls, tls_context_for
from gateway.observability import Metrics
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


async def check_forever(connection: BrokerConnection, broker: BrokerSettings) -> None:
    """Publish every half `mqtt_timeout` while up; a stalled broker ends the connection."""
    alive = json.dumps({"alive": True}).encode()
    while True:
        await asyncio.sleep(broker.mqtt_timeout / 2)
        if connection.up:
            with contextlib.suppress(LinkError):
                await connection.publish(broker.check_topic, alive)


async def explain_unreachable(broker: BrokerSettings, error: str | None) -> None:
    """Log why the broker cannot be reached, with the TLS reason when there is one."""
    address = broker.address
    port = address.port
    diagnosis = None
    try:
        context = tls_context_for(broker)  # None for a broker without TLS
    except TlsConfigError as exc:
        diagnosis = str(exc)
    else:
        if context is not None:
            diagnosis = await diagnose_tls(address.host, port, context, broker.mqtt_timeout)
    if diagnosis is not None:
        log.error("broker.tls_failed", host=address.host, port=port, error=diagnosis)
    else:
        log.warning("broker.unreachable", host=address.host, port=port, error=error)


class BrokerProbe:
    def __init__(
        self,
        connect: ConnectionFactory,
        broker: BrokerSettings,
        metrics: Metrics,
        on_ready: Callable[[], object] | None = None,
    ) -> None:
        """`on_ready`: called each time the broker becomes reachable."""
        self._broker = broker
        self._metrics = metrics
        self._on_ready = on_ready
        self.connection = connect(
            ConnectionOptions(broker.client_id("probe"), min_delay=0.2, max_delay=1.0), self
        )
        self._ready = asyncio.Event()
        self._last_error: str | None = None
        self._checker: asyncio.Task[None] | None = None
        self._retained = RetainedReader(self.connection)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        """Start probing; wait up to `mqtt_timeout` for the first connection."""
        self.connection.start()
        self._checker = asyncio.create_task(check_forever(self.connection, self._broker))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self._broker.mqtt_timeout)
        if not self.ready:
            await explain_unreachable(self._broker, self._last_error)

    async def close(self) -> None:
        await cancel_and_wait(self._checker)
        await self.connection.stop()
        self._set_ready(False)

    async def read_retained(self, topic: str) -> bytes | None:
        """The message retained on `topic`, or None (none, or the broker cannot be asked)."""
        return await self._retained.read(topic) if self.ready else None

    async def publish_retained(self, topic: str, payload: bytes) -> None:
        await self.connection.publish(topic, payload, retain=True)

    # -- connection events -----------------------------------------------------------------

    def connection_up(self) -> None:
        self._set_ready(True)

    def connection_down(self, down: Down) -> None:
        self._last_error = str(down)
        if self.ready:
            log.warning("broker.lost", error=self._last_error)
        self._set_ready(False)

    def message(self, topic: str, payload: bytes) -> None:
        self._retained.message(topic, payload)

    def _set_ready(self, ready: bool) -> None:
        if ready and not self.ready:
            address = parse_broker_url(self._broker.mqtt_url)
            log.info("broker.reachable", host=address.host, port=address.port)
            self._ready.set()
            if self._on_ready is not None:
                self._on_ready()
        elif not ready:
            self._ready.clear()
        self._metrics.link_ready.set(1 if ready else 0)
