"""What the status page shows for each charge point, kept up to date from what the processor sees.

Three sources, each handed in by the MQTT service:

- presence documents (retained on `{cp_id}/presence`, published by the gateway on every connect
  and disconnect): online or offline, which gateway, since when, and for a disconnect the close
  code, reason and who closed;
- every frame a CP sends: a CP that talks is online until a presence document says otherwise
  (the last of the two to arrive wins), and its transaction starts and ends;
- the processor's state documents (`processor.state`): last boot, heartbeat, connector status.

No I/O: `changed()` tells the page server which rows to push.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processor.answers import Outcome
from processor.state import JsonObject

ONLINE, OFFLINE, UNKNOWN = "online", "offline", "unknown"
PRESENCE_FIELDS = {
    "connected": bool,
    "gateway": str,
    "instance": str,
    "connection": int,
    "subprotocol": str,
    "remote": str,
    "since": str,
    "at": str,
    "code": int,
    "reason": str,
    "closed_by": str,
}
TRANSACTION_ACTIONS = {"TransactionEvent", "StartTransaction", "StopTransaction"}


def parse_presence(payload: bytes) -> JsonObject | str:
    """The usable fields of a presence document, or why it is not one."""
    try:
        document = json.loads(payload)
    except ValueError:
        return "not JSON"
    if not isinstance(document, dict) or type(document.get("connected")) is not bool:
        return "not a presence document: `connected` must be true or false"
    return {
        name: value
        for name, kind in PRESENCE_FIELDS.items()
        if type(value := document.get(name)) is kind
    }


@dataclass
class CpView:
    cp_id: str
    online: str = UNKNOWN
    presence: JsonObject | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    transaction: JsonObject | None = None
    last_frame_at: str | None = None

    def row(self) -> JsonObject:
        """The row the page renders (see processor/static/status.html)."""
        state = self.state
        return {
            "id": self.cp_id,
            "status": self.online,
            "presence": self.presence,
            "boot": boot_summary(state),
            "lastHeartbeat": state.get("lastHeartbeat"),
            "lastSeen": _newest(state.get("lastSeen"), self.last_frame_at),
            "subprotocol": state.get("subprotocol"),
            "connectors": state.get("connectors") or {},
            "transaction": self.transaction,
        }


def boot_summary(state: Mapping[str, Any]) -> JsonObject | None:
    """Vendor, model and firmware from the last BootNotification (OCPP 2.x or 1.6 fields)."""
    reported = state.get("reported")
    if not isinstance(reported, dict):
        return None
    station = reported.get("chargingStation")
    if isinstance(station, dict):
        vendor, model = station.get("vendorName"), station.get("model")
        firmware = station.get("firmwareVersion")
    else:
        vendor, model = reported.get("chargePointVendor"), reported.get("chargePointModel")
        firmware = reported.get("firmwareVersion")
    return {"vendor": vendor, "model": model, "firmware": firmware, "at": state.get("bootedAt")}


def transaction_after(
    current: JsonObject | None, action: str, payload: Mapping[str, Any], outcome: Outcome, at: str
) -> JsonObject | None:
    """The CP's transaction after one transaction message (OCPP 2.x TransactionEvent, 1.6)."""
    if action == "TransactionEvent":
        info = payload.get("transactionInfo")
        if payload.get("eventType") == "Ended" or not isinstance(info, dict):
            return None
        started = current["since"] if current and current["id"] == info.get("transactionId") else at
        return {
            "id": info.get("transactionId"),
            "since": started,
            "chargingState": info.get("chargingState"),
        }
    if action == "StartTransaction" and outcome.error_code is None:
        started_16 = outcome.change.transaction
        if started_16 is not None:
            return {"id": started_16.transaction_id, "since": at, "chargingState": None}
        return current
    if action == "StopTransaction" and outcome.error_code is None:
        return None
    return current


class FleetStatus:
    def __init__(self) -> None:
        self._views: dict[str, CpView] = {}
        self._changed: set[str] = set()
        self._lost_instances: set[str] = set()  # gateway instances whose will was published

    def _view(self, cp_id: str) -> CpView:
        view = self._views.get(cp_id)
        if view is None:
            view = self._views[cp_id] = CpView(cp_id)
        self._changed.add(cp_id)
        return view

    def gateway(self, payload: bytes) -> str | None:
        """A gateway's status document; an instance gone offline takes its CPs with it."""
        try:
            document = json.loads(payload) if payload else None
        except ValueError:
            return "not JSON"
        if not isinstance(document, dict) or type(document.get("online")) is not bool:
            return "not a gateway status: `online` must be true or false"
        instance = document.get("instance")
        if not isinstance(instance, str):
            return None
        if document["online"]:
            # Back after its will (a broker connection that dropped): the presence documents
            # it publishes again from now on are true.
            self._lost_instances.discard(instance)
            return None
        self._lost_instances.add(instance)
        for view in list(self._views.values()):
            if view.presence is not None and view.presence.get("instance") == instance:
                self._mark_gateway_lost(view)
        return None

    def _mark_gateway_lost(self, view: CpView) -> None:
        presence = view.presence
        if presence is None or not presence.get("connected"):
            return
        view = self._view(view.cp_id)
        view.presence = {**presence, "connected": False, "closed_by": "gateway_lost"}
        view.online = OFFLINE

    def presence(self, cp_id: str, payload: bytes) -> str | None:
        """Record a presence document; returns why it was ignored, or None."""
        if not payload:  # a cleared retained message: the CP's presence is no longer known
            if cp_id in self._views:
                view = self._view(cp_id)
                view.presence, view.online = None, UNKNOWN
            return None
        document = parse_presence(payload)
        if isinstance(document, str):
            return document
        view = self._view(cp_id)
        view.presence = document
        view.online = ONLINE if document["connected"] else OFFLINE
        if document.get("instance") in self._lost_instances:
            self._mark_gateway_lost(view)
        return None

    def frame(
        self, cp_id: str, frame: bytes, outcome: Outcome, at: str, state: Mapping[str, Any] | None
    ) -> None:
        """A frame from the CP reached the processor: it is online, and its state may change."""
        view = self._view(cp_id)
        view.online = ONLINE
        view.last_frame_at = at
        if state is not None:
            view.state = state
        if outcome.action in TRANSACTION_ACTIONS and outcome.reply is not None:
            payload = _call_payload(frame)
            if payload is not None:
                view.transaction = transaction_after(
                    view.transaction, outcome.action or "", payload, outcome, at
                )

    def state_document(self, cp_id: str, state: Mapping[str, Any]) -> None:
        """A state document from the broker (another replica, or an earlier run)."""
        self._view(cp_id).state = state

    def rows(self) -> list[JsonObject]:
        return [self._views[cp_id].row() for cp_id in sorted(self._views)]

    def changed(self) -> list[JsonObject]:
        """Rows changed since the last call, for the live page."""
        rows = [self._views[cp_id].row() for cp_id in sorted(self._changed)]
        self._changed.clear()
        return rows


def _call_payload(frame: bytes) -> Mapping[str, Any] | None:
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    if isinstance(message, list) and len(message) == 4 and isinstance(message[3], dict):
        return message[3]
    return None


def _newest(first: object, second: object) -> str | None:
    values = [value for value in (first, second) if isinstance(value, str)]
    return max(values) if values else None
