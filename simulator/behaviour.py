"""What a simulated charge point does once connected, whatever its OCPP version.

The version modules (`v201`, `v16`) supply the messages; this module supplies the routine:
boot until accepted, heartbeat at the interval the CSMS asked for, run the charging scenario,
and reboot when the CSMS resets the station. The lines logged on the root logger are the ones
users of the simulator know (`CP1: connected to central system`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from simulator.config import StationConfig, StationState
from simulator.device_model import HEARTBEAT_INTERVAL, METER_INTERVAL, format_number
from simulator.routing import after

console = logging.getLogger()
"""The root logger: its lines (`INFO:root:CP1: ...`) are part of the simulator's interface."""

BOOT_RETRY_DEFAULT = 10.0


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The messages the stations send again when a CSMS asks with TriggerMessage.
TRIGGERABLE = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"}


@dataclass(frozen=True)
class BootAnswer:
    status: str
    interval: int


class StationBehaviour(ABC):
    """Version-independent routine; mixed into a subclass of the `ocpp` library's ChargePoint."""

    def __init__(self, config: StationConfig, state: StationState) -> None:
        self.config = config
        self.state = state
        self.reboot_requested = asyncio.Event()
        self.interval_changed = asyncio.Event()
        self.answered_any = False
        self._background: set[asyncio.Task[None]] = set()

    # -- supplied by the version modules --------------------------------------------------------

    @abstractmethod
    async def send_boot(self, reason: str) -> BootAnswer | None:
        """Send BootNotification; None when the CSMS answered with a CALLERROR."""

    @abstractmethod
    async def send_heartbeat(self) -> bool:
        """Send Heartbeat; False when the CSMS answered with a CALLERROR."""

    @abstractmethod
    async def run_scenario(self) -> None:
        """The charging session asked for with `--scenario`."""

    @abstractmethod
    async def send_status(self, status: str) -> None:
        """Send StatusNotification for the connector."""

    @abstractmethod
    def connector_status(self) -> str:
        """The connector's status as the version spells it."""

    @abstractmethod
    async def send_triggered_meter_values(self) -> None:
        """Send MeterValues because the CSMS asked for them with TriggerMessage."""

    if TYPE_CHECKING:
        # Supplied by the `ocpp` library's ChargePoint, which follows this class in the MRO.
        async def start(self) -> None:
            """Read and route the CSMS's messages until the connection closes."""

    # -- the routine ----------------------------------------------------------------------------

    async def operate(self) -> None:
        """Runs until every finite job is done (forever unless `--heartbeats` is given)."""
        if self.state.boot_accepted:
            console.info("%s: reconnected to central system", self.config.cp_id)
        else:
            await self.boot_until_accepted(self.state.boot_reason)
        jobs = [asyncio.create_task(self.run_heartbeats())]
        if self.config.scenario and not self.state.scenario_started:
            self.state.scenario_started = True
            jobs.append(asyncio.create_task(self.run_scenario()))
        try:
            await asyncio.gather(*jobs)
        finally:
            for job in jobs:  # one failed: the others end with it
                job.cancel()

    async def boot_until_accepted(self, reason: str) -> None:
        cp_id = self.config.cp_id
        while True:
            try:
                answer = await self.send_boot(reason)
            except TimeoutError:
                console.error(
                    "%s: no answer to BootNotification within %s s; retrying",
                    cp_id,
                    format_number(self.config.call_timeout),
                )
                continue
            if answer is not None:
                self.answered_any = True
            if answer is not None and answer.status == "Accepted":
                self.accept_boot(answer)
                return
            retry = answer.interval if answer is not None and answer.interval > 0 else None
            wait = float(retry) if retry else BOOT_RETRY_DEFAULT
            status = answer.status if answer is not None else "a CALLERROR"
            console.warning(
                "%s: central system answered BootNotification with %s; retrying in %s s",
                cp_id,
                status,
                format_number(wait),
            )
            await asyncio.sleep(wait)

    def accept_boot(self, answer: BootAnswer) -> None:
        cp_id = self.config.cp_id
        self.state.boot_accepted = True
        console.info("%s: connected to central system", cp_id)
        interval: float | None = self.config.heartbeat_interval
        if interval is None and answer.interval > 0:
            interval = answer.interval
        if interval is not None:
            self.state.model.assign(HEARTBEAT_INTERVAL, interval)
            console.info("%s: heartbeat interval set to %s", cp_id, format_number(interval))

    async def run_heartbeats(self) -> None:
        limit = self.config.heartbeats
        while limit is None or self.state.heartbeats_sent < limit:
            self.state.heartbeats_sent += 1
            try:
                if await self.send_heartbeat():
                    self.answered_any = True
            except TimeoutError:
                console.error(
                    "%s: no answer to Heartbeat within %s s",
                    self.config.cp_id,
                    format_number(self.config.call_timeout),
                )
            if limit is not None and self.state.heartbeats_sent >= limit:
                return
            await self.pause_between_heartbeats()

    async def pause_between_heartbeats(self) -> None:
        """Wait the heartbeat interval; a CSMS changing it restarts the wait with the new one."""
        while True:
            self.interval_changed.clear()
            try:
                await asyncio.wait_for(
                    self.interval_changed.wait(), self.state.model.number(HEARTBEAT_INTERVAL)
                )
            except TimeoutError:
                return

    def meter_interval(self) -> float:
        return self.state.model.number(METER_INTERVAL)

    # -- work started by the CSMS ---------------------------------------------------------------

    @after("TriggerMessage")
    def after_trigger_message(self, requested_message: str, **_: Any) -> None:
        """Send what the CSMS asked for, once the TriggerMessage answer has gone out."""
        if requested_message == "BootNotification":
            self.spawn(self._triggered_boot())
        elif requested_message == "Heartbeat":
            self.spawn(self._triggered_heartbeat())
        elif requested_message == "StatusNotification":
            self.spawn(self.send_status(self.connector_status()))
        elif requested_message == "MeterValues":
            self.spawn(self.send_triggered_meter_values())

    async def _triggered_boot(self) -> None:
        answer = await self.send_boot("Triggered")
        if answer is not None and answer.status == "Accepted":
            self.accept_boot(answer)

    async def _triggered_heartbeat(self) -> None:
        await self.send_heartbeat()

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` alongside the routine; it ends with the connection."""
        task = asyncio.create_task(self._quietly(job))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quietly(self, job: Coroutine[Any, Any, None]) -> None:
        try:
            await job
        except ConnectionClosed:
            pass  # the connection's end is reported once, by the runner
        except TimeoutError:
            console.error("%s: the central system did not answer in time", self.config.cp_id)

    async def stop_background(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def request_reboot(self, why: str) -> None:
        console.info("%s: rebooting (%s)", self.config.cp_id, why)
        self.reboot_requested.set()
