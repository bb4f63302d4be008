"""Keeps one small MQTT connection open to know whether the broker is reachable."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

import aiomqtt
import structlog

from gateway.backoff import backoff_delays
from gateway.links.broker_url import BrokerAddress
from gateway.links.mqtt_common import make_client
from gateway.links.tls import diagnose_tls, tls_failure
from gateway.observability import Metrics
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


class BrokerProbe:
    def __init__(
        self,
        address: BrokerAddress,
        identifier: str,
        timeout: float,
        keepalive: int,
        metrics: Metrics,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._address = address
        self._tls_context = tls_context
        self._tls_failure: str | None = None
        self._last_error: str | None = None
        self._identifier = identifier
        self._timeout = timeout
        self._keepalive = keepalive
        self._metrics = metrics
        self._connected = asyncio.Event()
        self._last_lost = float("-inf")
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._connected.is_set()

    def lost_within(self, seconds: float) -> bool:
        """Whether the broker is unreachable now or was lost in the last `seconds`."""
        return not self.ready or time.monotonic() - self._last_lost < seconds

    async def start(self, wait: float) -> None:
        """Start probing; wait up to `wait` seconds for the first connection."""
        self._task = asyncio.create_task(self._run(), name="broker-probe")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait)
        if not self.ready:
            await self._explain_unreachable()

    async def _explain_unreachable(self) -> None:
        host, port = self._address.host, self._address.port
        failure = self._tls_failure
        if failure is None and self._tls_context is not None:
            failure = await diagnose_tls(host, port, self._tls_context, self._timeout)
        if failure is not None:
            self._report_tls_failure(failure)
        else:
            log.warning("broker.unreachable", host=host, port=port, error=self._last_error)

    async def _run(self) -> None:
        delays = backoff_delays(initial=0.2, maximum=5.0)
        while True:
            client = make_client(
                self._address,
                self._identifier,
                self._timeout,
                self._keepalive,
                tls_context=self._tls_context,
            )
            try:
                async with client:
                    self._set_ready(True)
                    delays = backoff_delays(initial=0.2, maximum=5.0)
                    # Iterating the (empty) message queue returns only when the link drops.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                self._last_error = str(exc)
                failure = tls_failure(exc)
                if failure is not None:
                    self._report_tls_failure(failure)
                elif self.ready:
                    log.warning("broker.lost", error=str(exc))
            self._set_ready(False)
            await asyncio.sleep(next(delays))

    def _report_tls_failure(self, failure: str) -> None:
        if failure != self._tls_failure:  # once per distinct failure, not at every retry
            self._tls_failure = failure
            host, port = self._address.host, self._address.port
            log.error("broker.tls_failed", host=host, port=port, error=failure)

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._tls_failure = None
        if ready and not self.ready:
            log.info("broker.reachable", host=self._address.host, port=self._address.port)
            self._connected.set()
        elif not ready:
            if self.ready:
                self._last_lost = time.monotonic()
            self._connected.clear()
        self._metrics.link_ready.set(1 if ready else 0)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._set_ready(False)
