"""Each charge point's reported state, as one small JSON document.

The document (published retained to `<cpId>/state` by the local service)::

    {
      "chargePointId": "CP1",
      "subprotocol": "ocpp2.0.1",
      "reported": {"chargingStation": {...}, "reason": "PowerUp"},
      "bootedAt": "2024-05-01T10:00:00.000Z",
      "lastHeartbeat": "2024-05-01T10:00:10.000Z",
      "lastSeen": "2024-05-01T10:00:10.000Z",
      "connectors": {"1/1": {"status": "Available", "timestamp": "2024-05-01T10:00:01.000Z"}},
      "transactions": {"lastId": 2, "recent": [{"key": "5f3a…", "id": 2}]}
    }

`reported` is the last BootNotification payload exactly as the CP sent it (the AWS device shadow
holds the same attributes). Changes are expressed as JSON merge patches (RFC 7386), the semantics
of AWS IoT shadow updates, so the local document and the shadows evolve the same way.

Several processor replicas may record the same CP. `merge` combines two versions of a document
field by field, newest first, so replicas that learn each other's documents converge.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]

# How many recent StartTransaction answers are remembered to answer a repeated call the same way.
RECENT_TRANSACTIONS = 10


@dataclass(frozen=True)
class ConnectorStatus:
    status: str
    timestamp: str
    error_code: str | None = None  # OCPP 1.6 only

    def to_document(self) -> JsonObject:
        document: JsonObject = {"status": self.status, "timestamp": self.timestamp}
        if self.error_code is not None:
            document["errorCode"] = self.error_code
        return document


@dataclass(frozen=True)
class TransactionStarted:
    """A transaction id handed out for one StartTransaction call (identified by `key`)."""

    key: str
    transaction_id: int


@dataclass(frozen=True)
class StateChange:
    """What one message from a CP changes in its state; empty fields change nothing."""

    seen_at: str | None = None
    subprotocol: str | None = None
    boot: JsonObject | None = None
    heartbeat_at: str | None = None
    connector: tuple[str, ConnectorStatus] | None = None
    transaction: TransactionStarted | None = None

    @property
    def is_empty(self) -> bool:
        return self == StateChange()


def empty_document(cp_id: str) -> JsonObject:
    return {"chargePointId": cp_id}


def change_patch(change: StateChange, document: Mapping[str, Any]) -> JsonObject:
    """The merge patch recording `change`, except the boot attributes (see `apply_change`).

    `document` is the current state: a new transaction is added to its recent list.
    """
    patch: JsonObject = {}
    if change.seen_at is not None:
        patch["lastSeen"] = change.seen_at
    if change.subprotocol is not None:
        patch["subprotocol"] = change.subprotocol
    if change.boot is not None and change.seen_at is not None:
        patch["bootedAt"] = change.seen_at
    if change.heartbeat_at is not None:
        patch["lastHeartbeat"] = change.heartbeat_at
    if change.connector is not None:
        key, status = change.connector
        patch["connectors"] = {key: status.to_document()}
    if change.transaction is not None:
        patch["transactions"] = _with_transaction(document, change.transaction)
    return patch


def apply_change(document: Mapping[str, Any], change: StateChange) -> JsonObject:
    """The state after `change`; the boot attributes are replaced as a whole."""
    updated = merge_patch(document, change_patch(change, document))
    if change.boot is not None:
        updated["reported"] = copy.deepcopy(change.boot)
    return updated


def transaction_for(document: Mapping[str, Any], key: str) -> int | None:
    """The transaction id already given for the call identified by `key`, if any."""
    for entry in recent_transactions(document):
        if entry.key == key:
            return entry.transaction_id
    return None


def last_transaction_id(document: Mapping[str, Any]) -> int:
    transactions = document.get("transactions")
    if isinstance(transactions, dict):
        last_id = transactions.get("lastId")
        if type(last_id) is int:
            return last_id
    return 0


def recent_transactions(document: Mapping[str, Any]) -> list[TransactionStarted]:
    transactions = document.get("transactions")
    recent = transactions.get("recent") if isinstance(transactions, dict) else None
    if not isinstance(recent, list):
        return []
    return [
        TransactionStarted(entry["key"], entry["id"])
        for entry in recent
        if isinstance(entry, dict)
        and isinstance(entry.get("key"), str)
        and type(entry.get("id")) is int
    ]


def _with_transaction(document: Mapping[str, Any], started: TransactionStarted) -> JsonObject:
    recent = [entry for entry in recent_transactions(document) if entry.key != started.key]
    recent.append(started)
    return {
        "lastId": max(last_transaction_id(document), started.transaction_id),
        "recent": [
            {"key": entry.key, "id": entry.transaction_id}
            for entry in recent[-RECENT_TRANSACTIONS:]
        ],
    }


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonObject:
    """RFC 7386 JSON merge patch: objects merge, `None` removes a key, anything else replaces."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def replacement_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> JsonObject:
    """A merge patch that turns `old` into exactly `new` (removed keys become `None`)."""
    patch: JsonObject = {key: None for key in (old or {}) if key not in new}
    for key, value in new.items():
        previous = (old or {}).get(key)
        if isinstance(value, dict) and isinstance(previous, dict):
            patch[key] = replacement_patch(previous, value)
        else:
            patch[key] = copy.deepcopy(value)
    return patch


# -- documents from other replicas ---------------------------------------------------------


def sanitize(document: object, cp_id: str) -> JsonObject | None:
    """The usable part of a state document read from the broker, or None if it is not one."""
    if not isinstance(document, dict) or document.get("chargePointId") != cp_id:
        return None
    clean: JsonObject = {"chargePointId": cp_id}
    for key in ("subprotocol", "bootedAt", "lastHeartbeat", "lastSeen"):
        if isinstance(document.get(key), str):
            clean[key] = document[key]
    if isinstance(document.get("reported"), dict):
        clean["reported"] = document["reported"]
    connectors = document.get("connectors")
    if isinstance(connectors, dict):
        clean["connectors"] = {
            key: value
            for key, value in connectors.items()
            if isinstance(value, dict)
            and isinstance(value.get("status"), str)
            and isinstance(value.get("timestamp"), str)
        }
    if "transactions" in document:
        recent = recent_transactions(document)
        clean["transactions"] = {
            "lastId": max([last_transaction_id(document), *(e.transaction_id for e in recent)]),
            "recent": [{"key": e.key, "id": e.transaction_id} for e in recent],
        }
    return clean


def merge(local: Mapping[str, Any], remote: Mapping[str, Any]) -> JsonObject:
    """Combine two versions of one CP's document, keeping the newest of each part.

    Commutative, associative and idempotent, so replicas exchanging documents converge.
    Times are compared as strings: all of them are written in the same UTC format.
    """
    merged: JsonObject = {"chargePointId": local.get("chargePointId", remote.get("chargePointId"))}
    for key in ("lastHeartbeat", "lastSeen"):
        newest = _newest(local.get(key), remote.get(key))
        if newest is not None:
            merged[key] = newest
    seen_source = _pick(
        local, remote, lambda doc: (doc.get("lastSeen") or "", _canonical(doc.get("subprotocol")))
    )
    if "subprotocol" in seen_source:
        merged["subprotocol"] = seen_source["subprotocol"]
    boot_source = _pick(
        local, remote, lambda doc: (doc.get("bootedAt") or "", _canonical(doc.get("reported")))
    )
    for key in ("bootedAt", "reported"):
        if key in boot_source:
            merged[key] = copy.deepcopy(boot_source[key])
    connectors = _merge_connectors(local.get("connectors"), remote.get("connectors"))
    if connectors:
        merged["connectors"] = connectors
    transactions_source = _pick(
        local, remote, lambda doc: (last_transaction_id(doc), _canonical(doc.get("transactions")))
    )
    if "transactions" in transactions_source:
        merged["transactions"] = copy.deepcopy(transactions_source["transactions"])
    return merged


def _merge_connectors(local: object, remote: object) -> JsonObject:
    mine = local if isinstance(local, dict) else {}
    theirs = remote if isinstance(remote, dict) else {}
    merged: JsonObject = {}
    for key in sorted(mine.keys() | theirs.keys()):
        candidates = [value for value in (mine.get(key), theirs.get(key)) if value is not None]
        merged[key] = copy.deepcopy(
            max(candidates, key=lambda value: (str(value.get("timestamp", "")), _canonical(value)))
        )
    return merged


def _newest(first: object, second: object) -> str | None:
    values = [value for value in (first, second) if isinstance(value, str)]
    return max(values) if values else None


def _pick(first: Mapping[str, Any], second: Mapping[str, Any], rank: Any) -> Mapping[str, Any]:
    return first if rank(first) >= rank(second) else second


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
