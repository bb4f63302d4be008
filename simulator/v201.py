"""An OCPP 2.0.1 (or 2.1) charging station with one EVSE and one connector."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from ocpp import v21
from ocpp.v201 import ChargePoint, call, call_result
from websockets.asyncio.client import ClientConnection

from simulator.behaviour import TRIGGERABLE, BootAnswer, StationBehaviour, console, utc_now
from simulator.config import StationConfig, StationState
from simulator.device_model import AUTH, HEARTBEAT_INTERVAL, SetStatus
from simulator.identity import charging_station_201
from simulator.metering import sampled_values_201
from simulator.routing import after, on

EVSE_ID = 1
CONNECTOR_ID = 1


@dataclass
class Transaction:
    transaction_id: str
    id_token: dict[str, Any]
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    stop_trigger: str = "StopAuthorized"
    stopped_reason: str = "Local"
    seq_no: int = 0

    def next_seq_no(self) -> int:
        value = self.seq_no
        self.seq_no += 1
        return value

    def stop(self, trigger: str, reason: str) -> None:
        self.stop_trigger = trigger
        self.stopped_reason = reason
        self.stop_requested.set()


class Station201(StationBehaviour, ChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    def __init__(
        self, config: StationConfig, state: StationState, connection: ClientConnection
    ) -> None:
        StationBehaviour.__init__(self, config, state)
        ChargePoint.__init__(self, config.cp_id, connection, response_timeout=config.call_timeout)
        self._transaction: Transaction | None = None
        self._reset_when_idle = False

    # -- messages the station sends -------------------------------------------------------------

    async def send_boot(self, reason: str) -> BootAnswer | None:
        request = call.BootNotification(
            charging_station=charging_station_201(self.config.identity), reason=reason
        )
        response = await self.call(request)
        if response is None:
            return None
        return BootAnswer(status=str(response.status), interval=int(response.interval))

    async def send_heartbeat(self) -> bool:
        return await self.call(call.Heartbeat()) is not None

    async def send_status(self, status: str) -> None:
        await self.call(
            call.StatusNotification(
                timestamp=utc_now(),
                connector_status=status,
                evse_id=EVSE_ID,
                connector_id=CONNECTOR_ID,
            )
        )

    def connector_status(self) -> str:
        if self._transaction is not None:
            return "Occupied"
        return "Available" if self.state.connector_available else "Unavailable"

    def meter_value(self, context: str) -> list[dict[str, Any]]:
        session = self.config.session
        power = session.power_kw if self._transaction is not None else 0.0
        return [
            {
                "timestamp": utc_now(),
                "sampledValue": sampled_values_201(self.state.meter.register_wh, power, context),
            }
        ]

    # -- the charging session -------------------------------------------------------------------

    async def run_scenario(self) -> None:
        session = self.config.session
        await self.send_status("Available")
        await self.charge(
            {"idToken": session.id_token, "type": "ISO14443"},
            trigger="Authorized",
            authorize=True,
        )

    async def charge(
        self,
        id_token: dict[str, Any],
        *,
        trigger: str,
        authorize: bool,
        remote_start_id: int | None = None,
    ) -> None:
        """Plug in, (authorize,) start, meter, stop, unplug."""
        transaction = Transaction(transaction_id=str(uuid.uuid4()), id_token=id_token)
        self._transaction = transaction
        try:
            await self.send_status("Occupied")
            if not authorize or await self.authorize(id_token):
                await self.run_transaction(transaction, trigger, remote_start_id)
        finally:
            self._transaction = None
        await self.send_status(self.connector_status())
        if self._reset_when_idle:
            self.request_reboot("Reset OnIdle")

    async def run_transaction(
        self, transaction: Transaction, trigger: str, remote_start_id: int | None
    ) -> None:
        session = self.config.session
        cp_id = self.config.cp_id
        tx_id = transaction.transaction_id
        info: dict[str, Any] = {"transactionId": tx_id, "chargingState": "Charging"}
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        await self.transaction_event(
            transaction, "Started", trigger, info, "Transaction.Begin", transaction.id_token
        )
        console.info("%s: transaction %s started", cp_id, tx_id)
        for _ in range(session.meter_samples):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(transaction.stop_requested.wait(), self.meter_interval())
            if transaction.stop_requested.is_set():
                break
            self.state.meter.charge(session.power_kw, self.meter_interval())
            info = {"transactionId": tx_id, "chargingState": "Charging"}
            await self.transaction_event(
                transaction, "Updated", "MeterValuePeriodic", info, "Sample.Periodic"
            )
        info = {
            "transactionId": tx_id,
            "chargingState": "EVConnected",
            "stoppedReason": transaction.stopped_reason,
        }
        await self.transaction_event(
            transaction, "Ended", transaction.stop_trigger, info, "Transaction.End"
        )
        console.info(
            "%s: transaction %s ended, meter at %s Wh", cp_id, tx_id, self.state.meter.register_wh
        )

    async def authorize(self, id_token: dict[str, Any]) -> bool:
        response = await self.call(call.Authorize(id_token=id_token))
        status = response.id_token_info["status"] if response is not None else "a CALLERROR"
        if status != "Accepted":
            console.warning(
                "%s: central system answered Authorize with %s", self.config.cp_id, status
            )
            return False
        return True

    async def transaction_event(
        self,
        transaction: Transaction,
        event_type: str,
        trigger: str,
        info: dict[str, Any],
        context: str,
        id_token: dict[str, Any] | None = None,
    ) -> None:
        await self.call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=utc_now(),
                trigger_reason=trigger,
                seq_no=transaction.next_seq_no(),
                transaction_info=info,
                meter_value=self.meter_value(context),
                evse={"id": EVSE_ID, "connectorId": CONNECTOR_ID},
                id_token=id_token,
            )
        )

    # -- requests from the CSMS -----------------------------------------------------------------

    @on("Reset")
    def on_reset(self, type: str, **_: Any) -> call_result.Reset:
        if self._transaction is not None and type == "OnIdle":
            self._reset_when_idle = True
            return call_result.Reset(status="Scheduled")
        return call_result.Reset(status="Accepted")

    @after("Reset")
    def after_reset(self, type: str, **_: Any) -> None:
        if self._transaction is None:
            self.request_reboot(f"Reset {type}")
        elif type == "Immediate":
            self._reset_when_idle = True
            self._transaction.stop("ResetCommand", "ImmediateReset")

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, **_: Any) -> call_result.TriggerMessage:
        status = "Accepted" if requested_message in TRIGGERABLE else "NotImplemented"
        return call_result.TriggerMessage(status=status)

    async def send_triggered_meter_values(self) -> None:
        await self.call(call.MeterValues(evse_id=EVSE_ID, meter_value=self.meter_value("Trigger")))

    @on("GetVariables")
    def on_get_variables(
        self, get_variable_data: list[dict[str, Any]], **_: Any
    ) -> call_result.GetVariables:
        results = []
        for item in get_variable_data:
            attribute_type = item.get("attribute_type", "Actual")
            status, value = self.state.model.get(
                item["component"]["name"], item["variable"]["name"], attribute_type
            )
            result: dict[str, Any] = {
                "attribute_status": status.value,
                "attribute_type": attribute_type,
                "component": item["component"],
                "variable": item["variable"],
            }
            if value is not None:
                result["attribute_value"] = value
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(
        self, set_variable_data: list[dict[str, Any]], **_: Any
    ) -> call_result.SetVariables:
        results = []
        for item in set_variable_data:
            attribute_type = item.get("attribute_type", "Actual")
            name = (item["component"]["name"], item["variable"]["name"])
            status = self.state.model.set(*name, item["attribute_value"], attribute_type)
            if name == HEARTBEAT_INTERVAL and status is SetStatus.ACCEPTED:
                self.interval_changed.set()
            results.append(
                {
                    "attribute_status": status.value,
                    "attribute_type": attribute_type,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return call_result.SetVariables(set_variable_result=results)

    @on("ChangeAvailability")
    def on_change_availability(
        self, operational_status: str, **_: Any
    ) -> call_result.ChangeAvailability:
        self.state.connector_available = operational_status == "Operative"
        status = "Scheduled" if self._transaction is not None else "Accepted"
        return call_result.ChangeAvailability(status=status)

    @after("ChangeAvailability")
    def after_change_availability(self, **_: Any) -> None:
        if self._transaction is None:
            self.spawn(self.send_status(self.connector_status()))

    @on("RequestStartTransaction")
    def on_request_start_transaction(
        self, id_token: dict[str, Any], remote_start_id: int, **_: Any
    ) -> call_result.RequestStartTransaction:
        if self._transaction is not None or not self.state.connector_available:
            return call_result.RequestStartTransaction(status="Rejected")
        return call_result.RequestStartTransaction(status="Accepted")

    @after("RequestStartTransaction")
    def after_request_start_transaction(
        self, id_token: dict[str, Any], remote_start_id: int, **_: Any
    ) -> None:
        if self._transaction is not None or not self.state.connector_available:
            return
        token = {"idToken": id_token["id_token"], "type": id_token["type"]}
        authorize = self.state.model.flag((AUTH, "AuthorizeRemoteStart"))
        self.spawn(
            self.charge(
                token, trigger="RemoteStart", authorize=authorize, remote_start_id=remote_start_id
            )
        )

    @on("RequestStopTransaction")
    def on_request_stop_transaction(
        self, transaction_id: str, **_: Any
    ) -> call_result.RequestStopTransaction:
        transaction = self._transaction
        if transaction is None or transaction.transaction_id != transaction_id:
            return call_result.RequestStopTransaction(status="Rejected")
        transaction.stop("RemoteStop", "Remote")
        return call_result.RequestStopTransaction(status="Accepted")

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")


class Station21(Station201):
    """The same station speaking OCPP 2.1 (`ocpp2.1`).

    The messages it sends and answers keep their 2.0.1 fields in 2.1 (2.1 only adds optional
    ones), so only the schemas the `ocpp` library checks them against change.
    """

    _call = v21.call
    _call_result = v21.call_result
    _ocpp_version = "2.1"
