"""An OCPP 1.6 charge point with one connector."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from ocpp.v16 import ChargePoint, call, call_result
from websockets.asyncio.client import ClientConnection

from simulator.behaviour import TRIGGERABLE, BootAnswer, StationBehaviour, console, utc_now
from simulator.config import StationConfig, StationState
from simulator.device_model import AUTH, ConfigurationStatus
from simulator.identity import boot_payload_16
from simulator.metering import sampled_values_16
from simulator.routing import after, on

CONNECTOR_ID = 1


@dataclass
class Transaction:
    id_tag: str
    transaction_id: int | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str = "Local"

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop_requested.set()


class Station16(StationBehaviour, ChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    def __init__(
        self, config: StationConfig, state: StationState, connection: ClientConnection
    ) -> None:
        StationBehaviour.__init__(self, config, state)
        ChargePoint.__init__(self, config.cp_id, connection, response_timeout=config.call_timeout)
        self._transaction: Transaction | None = None
        self._reset_when_idle: str | None = None

    # -- messages the charge point sends --------------------------------------------------------

    async def send_boot(self, reason: str) -> BootAnswer | None:
        payload = boot_payload_16(self.config.identity)
        response = await self.call(
            call.BootNotification(
                charge_point_model=payload["chargePointModel"],
                charge_point_vendor=payload["chargePointVendor"],
                charge_point_serial_number=payload["chargePointSerialNumber"],
                firmware_version=payload["firmwareVersion"],
                iccid=payload["iccid"],
                imsi=payload["imsi"],
            )
        )
        if response is None:
            return None
        return BootAnswer(status=str(response.status), interval=int(response.interval))

    async def send_heartbeat(self) -> bool:
        return await self.call(call.Heartbeat()) is not None

    async def send_status(self, status: str) -> None:
        await self.call(
            call.StatusNotification(
                connector_id=CONNECTOR_ID, error_code="NoError", status=status, timestamp=utc_now()
            )
        )

    def connector_status(self) -> str:
        if self._transaction is not None:
            return "Charging"
        return "Available" if self.state.connector_available else "Unavailable"

    def meter_value(self, context: str) -> list[dict[str, Any]]:
        session = self.config.session
        power = session.power_kw if self._transaction is not None else 0.0
        return [
            {
                "timestamp": utc_now(),
                "sampledValue": sampled_values_16(self.state.meter.register_wh, power, context),
            }
        ]

    # -- the charging session -------------------------------------------------------------------

    async def run_scenario(self) -> None:
        session = self.config.session
        await self.send_status("Available")
        await self.charge(session.id_token, authorize=True)

    async def charge(self, id_tag: str, *, authorize: bool) -> None:
        """Preparing, (Authorize,) StartTransaction, Charging, MeterValues, StopTransaction."""
        transaction = Transaction(id_tag=id_tag)
        self._transaction = transaction
        try:
            await self.send_status("Preparing")
            if not authorize or await self.authorize(id_tag):
                await self.run_transaction(transaction)
                await self.send_status("Finishing")
        finally:
            self._transaction = None
        await self.send_status(self.connector_status())
        if self._reset_when_idle is not None:
            self.request_reboot(f"Reset {self._reset_when_idle}")

    async def authorize(self, id_tag: str) -> bool:
        response = await self.call(call.Authorize(id_tag=id_tag))
        status = response.id_tag_info["status"] if response is not None else "a CALLERROR"
        if status != "Accepted":
            console.warning(
                "%s: central system answered Authorize with %s", self.config.cp_id, status
            )
            return False
        return True

    async def run_transaction(self, transaction: Transaction) -> None:
        session = self.config.session
        cp_id = self.config.cp_id
        started = await self.call(
            call.StartTransaction(
                connector_id=CONNECTOR_ID,
                id_tag=transaction.id_tag,
                meter_start=self.state.meter.register_wh_int,
                timestamp=utc_now(),
            )
        )
        if started is None or started.id_tag_info["status"] != "Accepted":
            console.warning("%s: central system did not accept StartTransaction", cp_id)
            return
        transaction.transaction_id = int(started.transaction_id)
        console.info("%s: transaction %s started", cp_id, transaction.transaction_id)
        await self.send_status("Charging")
        for _ in range(session.meter_samples):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(transaction.stop_requested.wait(), self.meter_interval())
            if transaction.stop_requested.is_set():
                break
            self.state.meter.charge(session.power_kw, self.meter_interval())
            await self.call(
                call.MeterValues(
                    connector_id=CONNECTOR_ID,
                    transaction_id=transaction.transaction_id,
                    meter_value=self.meter_value("Sample.Periodic"),
                )
            )
        await self.call(
            call.StopTransaction(
                meter_stop=self.state.meter.register_wh_int,
                timestamp=utc_now(),
                transaction_id=transaction.transaction_id,
                reason=transaction.stop_reason,
                id_tag=transaction.id_tag,
            )
        )
        console.info(
            "%s: transaction %s ended, meter at %s Wh",
            cp_id,
            transaction.transaction_id,
            self.state.meter.register_wh,
        )

    # -- requests from the central system -------------------------------------------------------

    @on("Reset")
    def on_reset(self, type: str, **_: Any) -> call_result.Reset:
        return call_result.Reset(status="Accepted")

    @after("Reset")
    def after_reset(self, type: str, **_: Any) -> None:
        if self._transaction is None:
            self.request_reboot(f"Reset {type}")
        else:
            self._reset_when_idle = type
            self._transaction.stop(f"{type}Reset")

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, **_: Any) -> call_result.TriggerMessage:
        status = "Accepted" if requested_message in TRIGGERABLE else "NotImplemented"
        return call_result.TriggerMessage(status=status)

    async def send_triggered_meter_values(self) -> None:
        transaction = self._transaction
        await self.call(
            call.MeterValues(
                connector_id=CONNECTOR_ID,
                transaction_id=transaction.transaction_id if transaction else None,
                meter_value=self.meter_value("Trigger"),
            )
        )

    @on("GetConfiguration")
    def on_get_configuration(
        self, key: list[str] | None = None, **_: Any
    ) -> call_result.GetConfiguration:
        known, unknown = self.state.model.configuration_16(key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    def on_change_configuration(
        self, key: str, value: str, **_: Any
    ) -> call_result.ChangeConfiguration:
        status = self.state.model.change_16(key, value)
        if key == "HeartbeatInterval" and status is ConfigurationStatus.ACCEPTED:
            self.interval_changed.set()
        return call_result.ChangeConfiguration(status=status.value)

    @on("ChangeAvailability")
    def on_change_availability(self, type: str, **_: Any) -> call_result.ChangeAvailability:
        self.state.connector_available = type == "Operative"
        status = "Scheduled" if self._transaction is not None else "Accepted"
        return call_result.ChangeAvailability(status=status)

    @after("ChangeAvailability")
    def after_change_availability(self, **_: Any) -> None:
        if self._transaction is None:
            self.spawn(self.send_status(self.connector_status()))

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self, id_tag: str, **_: Any
    ) -> call_result.RemoteStartTransaction:
        if self._transaction is not None or not self.state.connector_available:
            return call_result.RemoteStartTransaction(status="Rejected")
        return call_result.RemoteStartTransaction(status="Accepted")

    @after("RemoteStartTransaction")
    def after_remote_start_transaction(self, id_tag: str, **_: Any) -> None:
        if self._transaction is not None or not self.state.connector_available:
            return
        authorize = self.state.model.flag((AUTH, "AuthorizeRemoteStart"))
        self.spawn(self.charge(id_tag, authorize=authorize))

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(
        self, transaction_id: int, **_: Any
    ) -> call_result.RemoteStopTransaction:
        transaction = self._transaction
        if transaction is None or transaction.transaction_id != transaction_id:
            return call_result.RemoteStopTransaction(status="Rejected")
        transaction.stop("Remote")
        return call_result.RemoteStopTransaction(status="Accepted")

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")
