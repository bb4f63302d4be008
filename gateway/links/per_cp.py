"""One MQTT connection per charge point, client id = cpId (the AWS-compatible link).

With the CP's own client id, IoT policies and lifecycle events work per charge point, and the
broker itself allows one connection per CP across gateway replicas: a second CONNECT with the
same client id drops the first. Which of two racing connections keeps the CP is decided by
claims (`claims.py`): before connecting, a channel publishes its claim, retained, on the CP's
claim topic through the gateway's probe connection, and its own connection subscribes to that
topic.

- A newer claim arrives: another connection of the CP is newer; the channel ends (the session
  closes the WebSocket with 1000) and never reconnects.
- An older claim arrives: an older connection announced itself late; the channel publishes its
  own claim again so the other one learns it lost.
- The connection drops: AWS IoT Core says "session taken over" (0x8E), Mosquitto 2.0 only closes
  the socket, and a broker that went away looks the same. The channel reads the retained claim
  through the probe: newer than its own means taken over; its own (or older) means the newest
  connection is this one, so it reconnects within the grace period (resuming its session),
  which drops an older rival, and that rival then finds the newer claim and gives up. When the
  broker cannot be asked, the broker is the problem and the channel reconnects too.
- A stalled connection (no acknowledgement in time) is never a takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Coroutine
from typing import Any

import structlog

from gateway.backoff import backoff_delays
from gateway.links.base import BrokerUnavailable, Channel, Deliver, LinkLost, OnLost, TakenOver
from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.channel import CpChannel
from gateway.links.claims import Claim, decode_claim, next_connection_id
from gateway.links.connection import (
    ConnectionOptions,
    Down,
    DownReason,
    LinkError,
    Subscription,
    Will,
)
from gateway.links.farewells import LateFarewells
from gateway.links.probe import BrokerProbe
from gateway.observability import Metrics
from gateway.presence import Presence
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


class PerCpLink:
    def __init__(
        self, broker: BrokerSettings, metrics: Metrics, connect: ConnectionFactory
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.connect = connect
        self.probe = BrokerProbe(connect, broker, metrics, on_ready=self._broker_back)
        # Offline documents of CPs closed while the broker was away go out through the probe.
        self.farewells = LateFarewells(metrics, lambda: self.probe)

    @property
    def ready(self) -> bool:
        return self.probe.ready

    async def start(self) -> None:
        await self.probe.start()

    async def open_channel(
        self,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        *,
        since: float | None = None,
        presence: Presence | None = None,
    ) -> Channel:
        claim = Claim(since or time.time(), self.broker.gateway_id, next_connection_id())
        channel = PerCpChannel(self, cp_id, subprotocol, deliver, on_lost, claim, presence)
        self.farewells.forget(channel.presence_topic)
        await channel.open()
        return channel

    def _broker_back(self) -> None:
        self.farewells.publish_soon()

    async def close(self) -> None:
        await self.farewells.close()
        await self.probe.close()


class PerCpChannel(CpChannel):
    def __init__(
        self,
        link: PerCpLink,
        cp_id: str,
        subprotocol: str,
        deliver: Deliver,
        on_lost: OnLost,
        claim: Claim,
        presence: Presence | None = None,
    ) -> None:
        super().__init__(
            link.broker,
            link.metrics,
            cp_id,
            subprotocol,
            deliver,
            on_lost,
            claim,
            presence,
            link.farewells,
        )
        self._probe = link.probe
        self.connected = asyncio.Event()
        # Settled by the next event of a connection attempt: None when up, else why not.
        self._attempt: asyncio.Future[str | None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._opened = False  # until then a drop is open()'s to handle, not a recovery's
        self._dropped_while_opening: Down | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = log.bind(cp_id=cp_id)
        self.connection = link.connect(
            ConnectionOptions(
                cp_id,
                # Keep the broker session through a short outage, so /out messages are not lost.
                session_expiry=int(link.broker.broker_grace),
                reconnect=False,
                # The broker says the CP is offline if the gateway vanishes without closing.
                will=Will(self.presence_topic, presence.will) if presence else None,
            ),
            self,
        )

    async def open(self) -> None:
        """Claim the CP, connect and subscribe; returns once the subscription is acknowledged."""
        try:
            await self._open()
        except BaseException:
            await self._abandon()
            raise
        self._opened = True
        dropped = self._dropped_while_opening
        if dropped is not None and not self.connected.is_set():
            self._start_recovery(dropped)

    def _start_recovery(self, down: Down) -> None:
        self._recovery = asyncio.create_task(self._recover(down), name=f"recover-{self.cp_id}")

    async def _open(self) -> None:
        try:
            await self._publish_claim()
        except LinkError as exc:
            raise BrokerUnavailable(f"cannot publish the claim: {exc}") from exc
        # Opening gets as long as a reconnect would: the CP has its 101 and waits for nothing.
        timeout = self.broker.mqtt_timeout
        deadline = time.monotonic() + max(timeout, self.broker.broker_grace)
        failure = await self._connect_and_subscribe(timeout)
        while failure is not None:
            # Dropped while opening: by a newer rival (give up), by an older one whose late
            # claim was just answered with ours (connect again), or the broker failed.
            newer = await self._lost_to_newer()
            if newer:
                raise TakenOver(self.cp_id)
            remaining = deadline - time.monotonic()
            if newer is None or remaining <= 0:
                raise BrokerUnavailable(f"cannot open the broker channel: {failure}")
            await asyncio.sleep(random.uniform(0, min(0.1, remaining)))
            failure = await self._connect_and_subscribe(min(timeout, deadline - time.monotonic()))

    async def close(self, farewell: bytes | None = None) -> None:
        await self.outbox.close()  # what is queued reaches the CP, or is reported undelivered
        if farewell is not None:
            await self.say_farewell(farewell)
        current = asyncio.current_task()
        pending = {task for task in self._tasks if task is not current}
        if pending and self.connected.is_set():  # notices on their way to the broker
            await asyncio.wait(pending, timeout=self.broker.mqtt_timeout)
        await self._abandon()

    async def _abandon(self) -> None:
        """Stop everything the channel runs; it never reconnects after this."""
        current = asyncio.current_task()
        self.ended.set()
        self.connected.clear()
        for task in [self._recovery, *self._tasks]:
            if task is not current:
                await cancel_and_wait(task)
        await self.connection.stop()

    # -- connection events -----------------------------------------------------------------

    def connection_up(self) -> None:
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(None)

    def connection_down(self, down: Down) -> None:
        self.connected.clear()
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(str(down))
        elif not self._opened:
            self._dropped_while_opening = down  # between the SUBACK and the end of open()
        elif not self.ended.is_set() and self._recovery is None:
            self._start_recovery(down)

    def message(self, topic: str, payload: bytes) -> None:
        if topic == self.claim_topic:
            self.consider(decode_claim(payload))
        else:
            self.outbox.put(payload)

    # --------------------------------------------------------------------------------------

    async def _connect_and_subscribe(self, within: float) -> str | None:
        """Connect (resuming the session after the first time) and subscribe; None when done."""
        self._dropped_while_opening = None
        self._attempt = asyncio.get_running_loop().create_future()
        self.connection.start()
        failure: str | None
        try:
            async with asyncio.timeout(within):
                failure = await self._attempt
                if failure is None:
                    await self.connection.subscribe(
                        [Subscription(self.out_topic), Subscription(self.claim_topic)]
                    )
        except TimeoutError:
            failure = f"no answer from the broker within {within:.1f} s"
        except LinkError as exc:
            failure = str(exc)
        finally:
            self._attempt = None
        if failure is not None:
            await self.connection.stop()
            return failure
        if not self.ended.is_set():
            self.connected.set()
            if self.presence is not None:
                with contextlib.suppress(LinkError):  # a failure only leaves the older one
                    await self.announce(self.presence.online)
        return None

    async def _recover(self, down: Down) -> None:
        """After a drop: give the CP up if a newer connection has it, else reconnect in time."""
        try:
            deadline = time.monotonic() + self.broker.broker_grace
            if down.reason is not DownReason.STALLED and await self._lost_to_newer() is True:
                self.end(LinkLost.TAKEN_OVER)
                return
            self._log.warning("broker.channel_lost", error=str(down))
            delays = backoff_delays(initial=0.1, maximum=1.0)
            while not self.ended.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                failure = await self._connect_and_subscribe(remaining)
                if failure is None:
                    self.metrics.link_reconnects.inc()
                    self._log.info("broker.channel_restored")
                    return
                if await self._lost_to_newer() is True:  # a rival kept dropping this one
                    self.end(LinkLost.TAKEN_OVER)
                    return
                remaining = deadline - time.monotonic()
                await asyncio.sleep(max(0.0, min(next(delays), remaining)))
            self.end(LinkLost.BROKER_UNAVAILABLE)
        finally:
            self._recovery = None

    async def _lost_to_newer(self) -> bool | None:
        """True: a newer claim holds the CP. False: this one is the newest (an older claim was
        answered with it). None: the broker cannot say, so it is the broker's problem."""
        payload = await self._probe.read_retained(self.claim_topic)
        current = decode_claim(payload) if payload else None
        if current is None:
            return None
        if current > self.claim:
            return True
        if current < self.claim:
            with contextlib.suppress(LinkError):
                await self._publish_claim()
        return False

    async def reassert(self) -> None:
        with contextlib.suppress(LinkError):
            await self._publish_claim()

    async def _publish_claim(self) -> None:
        await self._probe.connection.publish(self.claim_topic, self.claim.encode(), retain=True)

    def end(self, reason: LinkLost) -> None:
        if not self.ended.is_set():
            self.connected.clear()
            self.in_background(self.connection.stop())
        super().end(reason)

    def in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
