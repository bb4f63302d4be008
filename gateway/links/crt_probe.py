"""The awscrt link's probe: one small CRT connection that tells whether the broker is reachable."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from gateway.links.crt_clients import (
    CrtClient,
    CrtClientFactory,
    describe_crt_error,
    is_tls_error,
)
from gateway.links.tls import TlsConfigError, diagnose_tls, ssl_context
from gateway.observability import Metrics

log = structlog.get_logger(__name__)

# The probe reconnects by itself, more patiently than a charge point's channel.
PROBE_RECONNECT_DELAYS_MS = (200, 5000)


class CrtProbe:
    def __init__(
        self, factory: CrtClientFactory, identifier: str, timeout: float, metrics: Metrics
    ) -> None:
        self._factory = factory
        self._identifier = identifier
        self._timeout = timeout
        self._metrics = metrics
        self._connected = asyncio.Event()
        self._last_lost = float("-inf")
        self._client: CrtClient | None = None
        self._reported_failure: str | None = None
        self._last_error: str | None = None
        self._explaining: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._connected.is_set()

    def lost_within(self, seconds: float) -> bool:
        """Whether the broker is unreachable now or was lost in the last `seconds`."""
        return not self.ready or time.monotonic() - self._last_lost < seconds

    async def start(self, wait: float) -> None:
        """Start probing; wait up to `wait` seconds for the first connection."""
        self._client = self._factory.new_client(
            self._identifier,
            self,
            rejoin=False,
            stop_when_dropped=False,
            reconnect_delays_ms=PROBE_RECONNECT_DELAYS_MS,
        )
        self._client.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait)
        if not self.ready:
            # Ask now: the CRT reports a failed TLS handshake only after a 10-30 s delay.
            await self._explain(None)

    async def close(self) -> None:
        if self._explaining is not None:
            self._explaining.cancel()
        client = self._client
        if client is not None:
            client.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.stopped.wait(), self._timeout)
        self._set_ready(False)

    # -- client events, on the asyncio loop ----------------------------------------------

    def connected(self, client: CrtClient, rejoined: bool) -> None:
        self._reported_failure = None
        self._set_ready(True)

    def connect_failed(self, client: CrtClient, error: Exception) -> None:
        self._last_error = describe_crt_error(error)
        if is_tls_error(error):
            if self._explaining is None or self._explaining.done():
                self._explaining = asyncio.create_task(self._explain(error))
        else:
            self._report("broker.connect_failed", describe_crt_error(error))

    def disconnected(self, client: CrtClient, reason_code: int | None, error: Exception) -> None:
        if self.ready:
            log.warning("broker.lost", error=describe_crt_error(error))
        self._set_ready(False)

    def message(self, client: CrtClient, topic: str, payload: bytes) -> None:
        pass  # the probe subscribes to nothing

    # ------------------------------------------------------------------------------------

    async def _explain(self, error: Exception | None) -> None:
        """Log why the broker cannot be reached, with the TLS reason when there is one."""
        material = self._factory.material
        diagnosis = None
        if material is not None:
            endpoint = self._factory.endpoint
            try:
                context = ssl_context(material)
            except TlsConfigError as exc:
                diagnosis = str(exc)
            else:
                diagnosis = await diagnose_tls(endpoint.host, endpoint.port, context, self._timeout)
        if diagnosis is None and error is not None:
            diagnosis = describe_crt_error(error)
        if self.ready:
            return
        if diagnosis is not None:
            self._report("broker.tls_failed", diagnosis)
        else:
            endpoint = self._factory.endpoint
            log.warning(
                "broker.unreachable", host=endpoint.host, port=endpoint.port, error=self._last_error
            )

    def _report(self, event: str, failure: str) -> None:
        if failure != self._reported_failure:  # once per distinct failure, not at every retry
            self._reported_failure = failure
            endpoint = self._factory.endpoint
            log.error(event, host=endpoint.host, port=endpoint.port, error=failure)

    def _set_ready(self, ready: bool) -> None:
        endpoint = self._factory.endpoint
        if ready and not self.ready:
            log.info("broker.reachable", host=endpoint.host, port=endpoint.port)
            self._connected.set()
        elif not ready:
            if self.ready:
                self._last_lost = time.monotonic()
            self._connected.clear()
        self._metrics.link_ready.set(1 if ready else 0)
