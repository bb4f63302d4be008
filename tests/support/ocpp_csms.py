"""A central system built on the `ocpp` library, for tests that need schema-checked answers.

Every CALL a charge point sends is validated against the OCPP JSON schemas by the library
(an invalid one gets a CALLERROR, kept in `errors_sent`), answered like a permissive CSMS, and
recorded in `calls`. Tests can also send CSMS-initiated requests (`request`) and get the
charge point's validated answer back.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from ocpp import v16, v21, v201
from ocpp.routing import on
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .echo_csms import cp_id_of
from .waiting import until


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Call:
    cp_id: str
    action: str
    payload: dict[str, Any]


class _Recording:
    """Records incoming CALLs and outgoing CALLERRORs of one CSMS-side ChargePoint."""

    csms: OcppCsms

    async def route_message(self, raw_msg: str) -> None:
        with contextlib.suppress(ValueError):
            message = json.loads(raw_msg)
            if isinstance(message, list) and message[:1] == [2] and len(message) == 4:
                self.csms.calls.append(Call(self.id, message[2], message[3]))  # type: ignore[attr-defined]
        await super().route_message(raw_msg)  # type: ignore[misc]

    async def _send(self, message: str) -> None:
        if message.startswith("[4"):
            self.csms.errors_sent.append(message)
        await super()._send(message)  # type: ignore[misc]


class Csms201(_Recording, v201.ChargePoint):
    @on("BootNotification")
    def on_boot(self, **_: Any) -> v201.call_result.BootNotification:
        return v201.call_result.BootNotification(
            current_time=now(), interval=self.csms.heartbeat_interval, status=self.csms.boot_status
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> v201.call_result.Heartbeat:
        return v201.call_result.Heartbeat(current_time=now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> v201.call_result.StatusNotification:
        return v201.call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> v201.call_result.Authorize:
        return v201.call_result.Authorize(id_token_info={"status": self.csms.authorize_status})

    @on("TransactionEvent")
    def on_transaction_event(self, **_: Any) -> v201.call_result.TransactionEvent:
        return v201.call_result.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> v201.call_result.MeterValues:
        return v201.call_result.MeterValues()


class Csms21(Csms201):
    """OCPP 2.1: the 2.0.1 answers are valid 2.1 answers; the library checks the 2.1 schemas."""

    _call = v21.call
    _call_result = v21.call_result
    _ocpp_version = "2.1"


class Csms16(_Recording, v16.ChargePoint):
    @on("BootNotification")
    def on_boot(self, **_: Any) -> v16.call_result.BootNotification:
        return v16.call_result.BootNotification(
            current_time=now(), interval=self.csms.heartbeat_interval, status=self.csms.boot_status
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> v16.call_result.Heartbeat:
        return v16.call_result.Heartbeat(current_time=now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> v16.call_result.StatusNotification:
        return v16.call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> v16.call_result.Authorize:
        return v16.call_result.Authorize(id_tag_info={"status": self.csms.authorize_status})

    @on("StartTransaction")
    def on_start_transaction(self, **_: Any) -> v16.call_result.StartTransaction:
        self.csms.transaction_ids += 1
        return v16.call_result.StartTransaction(
            transaction_id=self.csms.transaction_ids, id_tag_info={"status": "Accepted"}
        )

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> v16.call_result.MeterValues:
        return v16.call_result.MeterValues()

    @on("StopTransaction")
    def on_stop_transaction(self, **_: Any) -> v16.call_result.StopTransaction:
        return v16.call_result.StopTransaction(id_tag_info={"status": "Accepted"})


@dataclass
class OcppCsms:
    host: str = "127.0.0.1"
    port: int = 0
    heartbeat_interval: int = 10
    boot_status: str = "Accepted"
    authorize_status: str = "Accepted"

    calls: list[Call] = field(default_factory=list)
    errors_sent: list[str] = field(default_factory=list)
    connections: Counter[str] = field(default_factory=Counter)
    transaction_ids: int = 0
    _peers: dict[str, Csms201 | Csms16] = field(default_factory=dict)
    _server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def actions(self, cp_id: str, *, without: Sequence[str] = ("Heartbeat",)) -> list[str]:
        return [c.action for c in self.calls if c.cp_id == cp_id and c.action not in without]

    def payloads(self, cp_id: str, action: str) -> list[dict[str, Any]]:
        return [c.payload for c in self.calls if c.cp_id == cp_id and c.action == action]

    async def wait_for(
        self, cp_id: str, action: str, count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        await until(
            lambda: len(self.payloads(cp_id, action)) >= count,
            timeout,
            f"{count} {action} from {cp_id}",
        )
        return self.payloads(cp_id, action)

    async def request(self, cp_id: str, payload: Any) -> Any:
        """Send a CSMS-initiated request; the answer is schema-checked by the library."""
        return await self._peers[cp_id].call(payload, suppress=False)

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            subprotocols=[Subprotocol("ocpp2.1"), Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")],
            ping_interval=None,
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> OcppCsms:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, connection: ServerConnection) -> None:
        cp_id = cp_id_of(connection.request.path if connection.request else "/")
        self.connections[cp_id] += 1
        peer_classes: dict[str | None, type[Csms201 | Csms16]] = {
            "ocpp1.6": Csms16,
            "ocpp2.1": Csms21,
        }
        peer_class = peer_classes.get(connection.subprotocol, Csms201)
        peer = peer_class(cp_id, connection)
        peer.csms = self
        self._peers[cp_id] = peer
        with contextlib.suppress(ConnectionClosed):
            await peer.start()
