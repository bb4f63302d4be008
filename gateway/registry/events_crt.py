"""The Thing-deleted watcher on the AWS CRT, for gateways that sign with SigV4 (no certificate).

The CRT client reconnects by itself with back-off; after every connection the watcher
subscribes again (the session is clean) and retries a refused subscription with back-off too.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.backoff import backoff_delays
from gateway.links.crt_clients import (
    BrokerRefused,
    CrtClient,
    CrtClientFactory,
    CrtLinkError,
    describe_crt_error,
)
from gateway.registry.events import (
    RETRY_INITIAL,
    RETRY_MAXIMUM,
    RegistryEventWatcher,
    refusal_message,
)
from gateway.settings import Settings

QOS_AT_LEAST_ONCE = 1


class CrtEventWatcher(RegistryEventWatcher):
    def __init__(self, settings: Settings, *, topic: str, client_id: str) -> None:
        super().__init__(topic=topic, client_id=client_id, timeout=settings.mqtt_timeout)
        self._factory = CrtClientFactory(settings)
        self._client: CrtClient | None = None
        self._subscriber: asyncio.Task[None] | None = None

    def _connect(self) -> None:
        self._client = self._factory.new_client(
            self.client_id,
            self,
            rejoin=False,
            stop_when_dropped=False,
            reconnect_delays_ms=(int(RETRY_INITIAL * 1000), int(RETRY_MAXIMUM * 1000)),
        )
        self._client.start()

    async def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
        client = self._client
        if client is not None:
            client.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.stopped.wait(), self._timeout)
            self._client = None
        await super().close()

    async def _subscribe(self, client: CrtClient) -> None:
        delays = backoff_delays(initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM)
        while True:
            try:
                await client.subscribe(self.topic, QOS_AT_LEAST_ONCE)
            except BrokerRefused as exc:
                problem = refusal_message(self.topic, str(exc).rpartition(": ")[2])
            except CrtLinkError as exc:
                problem = str(exc)  # the connection dropped: `connected` subscribes again
                self._unavailable(problem, retry_in=None)
                return
            else:
                self._now_subscribed()
                return
            delay = next(delays)
            self._unavailable(problem, retry_in=delay)
            await asyncio.sleep(delay)

    # -- client events, on the asyncio loop ----------------------------------------------

    def connected(self, client: CrtClient, rejoined: bool) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
        self._subscriber = asyncio.create_task(self._subscribe(client), name="registry-events")

    def connect_failed(self, client: CrtClient, error: Exception) -> None:
        self._unavailable(describe_crt_error(error), retry_in=None)

    def disconnected(self, client: CrtClient, reason_code: int | None, error: Exception) -> None:
        self._unavailable(describe_crt_error(error), retry_in=None)

    def message(self, client: CrtClient, topic: str, payload: bytes) -> None:
        self.handle_event(topic, payload)
