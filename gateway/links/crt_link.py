"""One AWS CRT (awsiotsdk) MQTT 5 client per charge point, client id = cpId.

The same behaviour as the aiomqtt per-CP link (`per_cp.py`), through the AWS IoT Device SDK's
client, which reaches AWS IoT Core with the device certificate (mutual TLS) or over WebSockets
signed with SigV4 from the default AWS credential chain (the ECS task role), so a deployment
needs no certificate at all:

- `open_channel` returns once the subscription to the CP's outbound topic is acknowledged.
- Frames go out with QoS 1 and the `subprotocol` user property; `publish` returns on PUBACK.
  While the broker is away, frames wait in order for up to `broker_grace` seconds.
- Session taken over by another replica: AWS IoT Core says so (DISCONNECT 0x8E); Mosquitto 2.0
  only closes the socket, so a drop is classified with the link's probe connection exactly as
  in `per_cp.py`. The CRT would reconnect by itself and take the CP back, so every dropped
  client is stopped on the CRT's own thread first and only reconnected if the broker was lost.
- Broker lost: a new client for the same id resumes the broker session (clean start off) and
  subscribes again; past the grace period the channel ends with `BROKER_UNAVAILABLE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import structlog

from gateway.links.base import BrokerUnavailable, Channel, Deliver, LinkLost, OnLost
from gateway.links.crt_clients import (
    SESSION_TAKEN_OVER,
    BrokerRefused,
    CrtClient,
    CrtClientFactory,
    CrtLinkError,
    describe_crt_error,
    user_properties,
)
from gateway.links.crt_probe import CrtProbe
from gateway.links.grace import publish_within_grace, wait_for_either
from gateway.links.per_cp import BROKER_LOSS_WINDOW, TAKEOVER_CHECK_DELAY
from gateway.observability import Metrics
from gateway.settings import Settings

log = structlog.get_logger(__name__)


class CrtLink:
    def __init__(self, settings: Settings, metrics: Metrics, gateway_id: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._factory = CrtClientFactory(settings)
        self._probe = CrtProbe(
            self._factory,
            identifier=f"ocpp-gateway-probe-{gateway_id}",
            timeout=settings.mqtt_timeout,
            metrics=metrics,
        )

    @property
    def ready(self) -> bool:
        return self._probe.ready

    async def start(self) -> None:
        await self._probe.start(wait=self._settings.mqtt_timeout)

    async def open_channel(
        self, cp_id: str, subprotocol: str, deliver: Deliver, on_lost: OnLost
    ) -> Channel:
        channel = CrtChannel(
            self._factory,
            self._probe,
            self._settings,
            self._metrics,
            cp_id,
            subprotocol,
            deliver,
            on_lost,
        )
        await channel.open()
        return channel

    async def close(self) -> None:
        await self._probe.close()


class CrtChannel:
    def __init__(
        self,
        factory: CrtClientFactory,
        probe: CrtProbe,
        settings: Settings,
        metrics: Metrics,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
    ) -> None:
        self._factory = factory
        self._probe = probe
        self._settings = settings
        self._metrics = metrics
        self._cp_id = cp_id
        self._deliver = deliver
        self._on_lost = on_lost
        self._in_topic = settings.topic_in.format(cp_id=cp_id)
        self._out_topic = settings.topic_out.format(cp_id=cp_id)
        self._user_properties = user_properties({"subprotocol": subprotocol})
        self._client: CrtClient | None = None
        self._opening: asyncio.Future[None] | None = None
        self._opened = False
        self._dropped_while_opening: str | None = None
        self._connected = asyncio.Event()  # connected and subscribed
        self._dropped = asyncio.Event()  # the connection dropped again while recovering
        self._ended = asyncio.Event()
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = log.bind(cp_id=cp_id)

    async def open(self) -> None:
        """Connect and subscribe; the subscription is acknowledged before this returns."""
        self._opening = asyncio.get_running_loop().create_future()
        client = self._start_client(rejoin=False)
        try:
            async with asyncio.timeout(self._settings.mqtt_timeout):
                await self._opening
                await client.subscribe(self._out_topic, self._settings.qos)
        except TimeoutError:
            await self._stop(client)
            raise BrokerUnavailable(
                f"no answer from the broker within {self._settings.mqtt_timeout} s"
            ) from None
        except (BrokerUnavailable, CrtLinkError) as exc:
            await self._stop(client)
            raise BrokerUnavailable(f"cannot open the broker channel: {exc}") from exc
        if self._dropped_while_opening is not None:  # right after the SUBACK
            await self._stop(client)
            raise BrokerUnavailable(self._dropped_while_opening)
        self._opened = True
        self._connected.set()
        self._reader = asyncio.create_task(self._read_loop(), name=f"crt-reader-{self._cp_id}")

    def _start_client(self, rejoin: bool) -> CrtClient:
        client = self._factory.new_client(
            self._cp_id,
            self,
            rejoin=rejoin,
            stop_when_dropped=True,
            # Keep the broker session through a short outage, so /out messages are not lost.
            session_expiry=int(self._settings.broker_grace),
        )
        self._client = client
        client.start()
        return client

    async def publish(self, frame: bytes) -> None:
        await publish_within_grace(
            lambda: self._publish_now(frame),
            self._connected,
            self._ended,
            self._settings.broker_grace,
            retry_on=(CrtLinkError,),
            refused=(BrokerRefused,),
        )

    async def _publish_now(self, frame: bytes) -> None:
        client = self._client
        if client is None:
            raise CrtLinkError("the charge point's MQTT client is not started")
        await client.publish(self._in_topic, frame, self._settings.qos, self._user_properties)

    async def close(self) -> None:
        self._ended.set()
        self._connected.clear()
        current = asyncio.current_task()
        tasks = [task for task in (self._reader, self._recovery, *self._tasks) if task]
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._client is not None:
            await self._stop(self._client)

    # -- client events, on the asyncio loop ----------------------------------------------

    def connected(self, client: CrtClient, rejoined: bool) -> None:
        if client is not self._client or self._ended.is_set():
            return
        if not self._opened:
            self._settle_opening(None)
        else:
            self._spawn(self._resubscribe(client))

    def connect_failed(self, client: CrtClient, error: Exception) -> None:
        if client is not self._client or self._ended.is_set():
            return
        if not self._opened:
            self._settle_opening(f"cannot connect to the broker: {describe_crt_error(error)}")
        else:
            self._log.debug("broker.reconnect_failed", error=describe_crt_error(error))

    def disconnected(self, client: CrtClient, reason_code: int | None, error: Exception) -> None:
        if client is not self._client or self._ended.is_set():
            return
        self._connected.clear()
        if not self._opened:
            self._dropped_while_opening = f"the connection dropped: {describe_crt_error(error)}"
            self._settle_opening(self._dropped_while_opening)
        elif reason_code == SESSION_TAKEN_OVER:
            self._end(LinkLost.TAKEN_OVER)
        elif self._recovery is not None and not self._recovery.done():
            self._dropped.set()
        else:
            self._recovery = asyncio.create_task(
                self._recover(error), name=f"crt-recovery-{self._cp_id}"
            )

    def message(self, client: CrtClient, topic: str, payload: bytes) -> None:
        self._inbox.put_nowait(payload)

    # ------------------------------------------------------------------------------------

    def _settle_opening(self, failure: str | None) -> None:
        opening = self._opening
        if opening is None or opening.done():
            return
        if failure is None:
            opening.set_result(None)
        else:
            opening.set_exception(BrokerUnavailable(failure))

    async def _read_loop(self) -> None:
        while True:
            payload = await self._inbox.get()
            await self._deliver(payload)

    async def _recover(self, error: Exception) -> None:
        """After a drop: give the CP up if it was taken over, else reconnect within the grace."""
        deadline = time.monotonic() + self._settings.broker_grace
        while not self._ended.is_set():
            # Give the probe time to notice a broker-wide loss (it sees a closed socket in ms).
            await asyncio.sleep(TAKEOVER_CHECK_DELAY)
            if self._ended.is_set():
                return
            if not self._probe.lost_within(BROKER_LOSS_WINDOW):
                self._end(LinkLost.TAKEN_OVER)
                return
            self._log.warning("broker.channel_lost", error=describe_crt_error(error))
            self._dropped.clear()
            self._start_client(rejoin=True)
            with contextlib.suppress(BrokerUnavailable):  # the deadline passed
                await wait_for_either(self._connected, self._dropped, deadline)
            if self._connected.is_set():
                self._metrics.link_reconnects.inc()
                self._log.info("broker.channel_restored")
                return
            if not self._dropped.is_set():
                self._end(LinkLost.BROKER_UNAVAILABLE)
                return

    async def _resubscribe(self, client: CrtClient) -> None:
        try:
            await client.subscribe(self._out_topic, self._settings.qos)
        except BrokerRefused as exc:
            self._log.error("broker.subscription_refused", error=str(exc))
            self._end(LinkLost.BROKER_UNAVAILABLE)
            return
        except CrtLinkError as exc:
            self._log.info("broker.resubscribe_failed", error=str(exc))  # a drop follows
            return
        if client is self._client and not self._ended.is_set():
            self._connected.set()

    def _end(self, reason: LinkLost) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        self._connected.clear()
        if self._client is not None:
            self._client.stop()
        self._metrics.link_lost.labels(reason=reason.value).inc()
        self._on_lost(reason)

    async def _stop(self, client: CrtClient) -> None:
        client.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.stopped.wait(), self._settings.mqtt_timeout)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
