"""The local processor: answers charge point calls arriving over MQTT.

It subscribes to `$share/<group>/+/in` (replicas in the same group split the calls), answers
each CALL on `<cpId>/out` in the order the calls arrived, and keeps each CP's state document
retained on `<cpId>/state`. It also reads every state document (without its own, thanks to the
MQTT 5 "no local" option), so a restarted processor or another replica continues from what is
recorded instead of overwriting it.

aiomqtt does not reconnect by itself: `run` re-enters a new client with capped exponential
back-off whenever the broker goes away, until it is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import backoff_delays
from gateway.links.aiomqtt_connection import make_client
from gateway.links.broker_url import parse_broker_url
from processor.answers import AnswerConfig, Inbound, Kind, Outcome, format_time, respond
from processor.fleet_status import FleetStatus
from processor.settings import Settings
from processor.state import JsonObject, apply_change, empty_document, merge, sanitize
from processor.topics import TopicTemplate

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_client_id() -> str:
    # Unique per process: two replicas with one id would take each other's session over, and a
    # broker applying "no local" to retained messages would hide a restarted processor's documents.
    return f"ocpp-processor-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class SubscriptionRefused(aiomqtt.MqttError):
    """The broker refused a subscription (for example, no shared subscription support)."""


@dataclass
class Counters:
    answered: int = 0  # CALLRESULTs sent
    refused: int = 0  # CALLERRORs sent
    responses: int = 0  # CALLRESULTs / CALLERRORs received from CPs
    invalid: int = 0  # frames that are not OCPP-J, dropped
    answers_lost: int = 0  # answers the broker did not acknowledge
    states_published: int = 0


class Outbox:
    """Publishes without waiting for each acknowledgement, in order, at most `limit` unacked.

    aiomqtt hands a message to the socket as soon as its publish task starts; tasks start in
    creation order, so answers leave in the order the calls were read.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._pending: set[asyncio.Task[None]] = set()

    async def publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: str,
        *,
        qos: int,
        retain: bool,
        on_failure: Callable[[aiomqtt.MqttError], None],
    ) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._send(client, topic, payload, qos, retain, on_failure))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: str,
        qos: int,
        retain: bool,
        on_failure: Callable[[aiomqtt.MqttError], None],
    ) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            on_failure(exc)
        finally:
            self._slots.release()

    async def drain(self, within: float) -> None:
        """Wait until every publish is acknowledged or has failed, at most `within` seconds."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within)


class Processor:
    def __init__(self, settings: Settings, clock: Clock = utc_now) -> None:
        self.settings = settings
        self._address = parse_broker_url(settings.mqtt_url)
        self._clock = clock
        self._client_id = settings.client_id or default_client_id()
        self._topic_in = TopicTemplate(settings.topic_in)
        self._topic_out = TopicTemplate(settings.topic_out)
        self._topic_state = TopicTemplate(settings.topic_state)
        self._topic_presence = TopicTemplate(settings.topic_presence)
        self.status = FleetStatus()  # what the live status page shows
        self._answer_config = AnswerConfig(heartbeat_interval=settings.heartbeat_interval)
        self._states: dict[str, JsonObject] = {}
        # CPs whose latest state document the broker may not have (a publish failed).
        self._unpublished: set[str] = set()
        self._outbox = Outbox(settings.max_in_flight)
        self.counters = Counters()
        self.ready = asyncio.Event()  # set while subscribed
        self._connections = 0
        self._log = log.bind(broker=f"{self._address.host}:{self._address.port}")

    @property
    def connections(self) -> int:
        """How many times the processor has connected and subscribed so far."""
        return self._connections

    def state_of(self, cp_id: str) -> JsonObject | None:
        return self._states.get(cp_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, reconnecting with back-off when the broker goes away."""
        delays = self._backoff()
        while not stop.is_set():
            connections = self._connections
            try:
                await self._serve_connection(stop)
            except aiomqtt.MqttError as exc:
                if self._connections != connections:
                    delays = self._backoff()  # it was connected: start again from a short delay
                delay = next(delays)
                self._log.warning("broker.unavailable", error=str(exc), retry_in=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            finally:
                self.ready.clear()
        self._log.info("processor.stopped", **vars(self.counters))

    def _backoff(self) -> Iterator[float]:
        return backoff_delays(initial=0.2, maximum=self.settings.reconnect_max_delay)

    async def _serve_connection(self, stop: asyncio.Event) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # The broker keeps the subscriptions and queues calls while the processor reconnects.
        properties.SessionExpiryInterval = self.settings.session_expiry
        client = make_client(
            self._address,
            self._client_id,
            self.settings.mqtt_timeout,
            self.settings.mqtt_keepalive,
            max_inflight_messages=self.settings.max_in_flight,
            socket_options=_socket_options(self.settings.tcp_nodelay),
            # Never a clean start: Mosquitto saves no session that began with one, so after
            # its restart the calls queued for the processor would be gone. The id is unique
            # per process, so there is no stale session to resume at the first connect.
            clean_start=False,
            properties=properties,
        )
        # aiomqtt warns about "pending publish calls" past this many; the outbox bounds them.
        client.pending_calls_threshold = self.settings.max_in_flight + 10
        async with client:
            await self._subscribe(client)
            self._connections += 1
            self.ready.set()
            self._log.info("broker.connected", client_id=self._client_id)
            await self._republish_unpublished(client)
            reader = asyncio.create_task(self._read(client))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await self._outbox.drain(self.settings.shutdown_timeout)
                await self._leave_the_group(client)
                return
            reader.result()  # raises the MqttError that ended the connection

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        qos = self.settings.qos
        subscriptions: list[tuple[str, SubscribeOptions]] = []
        if self.settings.record_state:
            subscriptions.append(
                (self._topic_state.filter, SubscribeOptions(qos=qos, noLocal=True))
            )
        subscriptions.append(
            (self._topic_in.shared_filter(self.settings.share_group), SubscribeOptions(qos=qos))
        )
        subscriptions.append((self._topic_presence.filter, SubscribeOptions(qos=qos)))
        subscriptions.append((self.settings.topic_gateways, SubscribeOptions(qos=qos)))
        for topic_filter, options in subscriptions:
            granted = await client.subscribe(topic_filter, options=options)
            for code in granted:
                if getattr(code, "is_failure", False):
                    raise SubscriptionRefused(f"the broker refused {topic_filter!r}: {code}")

    async def _leave_the_group(self, client: aiomqtt.Client) -> None:
        """Unsubscribe before a clean stop: a kept session in the share group would otherwise
        be handed its share of the calls until it expires, with nobody to answer them."""
        shared = self._topic_in.shared_filter(self.settings.share_group)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.unsubscribe(shared)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                await self._on_message(client, message)
            except aiomqtt.MqttError:
                raise
            except Exception:  # one message must not stop the service
                self._log.exception("message.failed", topic=message.topic.value)

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        cp_id = self._topic_in.cp_id(topic)
        if cp_id is not None:
            await self._on_frame(client, cp_id, bytes(payload), _subprotocol(message))
            return
        cp_id = self._topic_state.cp_id(topic)
        if cp_id is not None and self.settings.record_state:
            await self._on_state_document(client, cp_id, bytes(payload))
            return
        cp_id = self._topic_presence.cp_id(topic)
        if cp_id is not None:
            problem = self.status.presence(cp_id, bytes(payload))
            if problem is not None:
                self._log.warning("presence.unreadable", cp_id=cp_id, problem=problem)
            return
        if topic_matches(self.settings.topic_gateways, topic):
            problem = self.status.gateway(bytes(payload))
            if problem is not None:
                self._log.warning("gateway_status.unreadable", topic=topic, problem=problem)

    async def _on_frame(
        self, client: aiomqtt.Client, cp_id: str, frame: bytes, subprotocol: str | None
    ) -> None:
        state = self._states.get(cp_id) or empty_document(cp_id)
        received_at = self._clock()
        outcome = respond(
            Inbound(cp_id, frame, received_at, subprotocol), state, self._answer_config
        )
        self._count_and_log(cp_id, outcome, subprotocol)
        if outcome.reply is not None:
            await self._outbox.publish(
                client,
                self._topic_out.topic(cp_id),
                outcome.reply,
                qos=self.settings.qos,
                retain=False,
                on_failure=lambda exc: self._answer_lost(cp_id, outcome, exc),
            )
        if self.settings.record_state and not outcome.change.is_empty:
            updated = apply_change(state, outcome.change)
            if updated != state:
                self._states[cp_id] = updated
                await self._publish_state(client, cp_id, updated)
        self.status.frame(cp_id, frame, outcome, format_time(received_at), self._states.get(cp_id))

    async def _on_state_document(self, client: aiomqtt.Client, cp_id: str, payload: bytes) -> None:
        """Another replica (or an earlier run) recorded this CP: merge, and heal if we know more."""
        if not payload:
            return
        try:
            remote = sanitize(json.loads(payload), cp_id)
        except ValueError:
            remote = None
        if remote is None:
            self._log.warning("state.unreadable", cp_id=cp_id)
            return
        local = self._states.get(cp_id)
        merged = remote if local is None else merge(local, remote)
        self._states[cp_id] = merged
        self.status.state_document(cp_id, merged)
        if merged != remote:
            await self._publish_state(client, cp_id, merged)

    async def _publish_state(
        self, client: aiomqtt.Client, cp_id: str, document: JsonObject
    ) -> None:
        self._unpublished.discard(cp_id)
        self.counters.states_published += 1
        await self._outbox.publish(
            client,
            self._topic_state.topic(cp_id),
            json.dumps(document, separators=(",", ":"), ensure_ascii=False),
            qos=self.settings.qos,
            retain=True,
            on_failure=lambda exc: self._state_unpublished(cp_id, exc),
        )

    async def _republish_unpublished(self, client: aiomqtt.Client) -> None:
        for cp_id in sorted(self._unpublished):
            await self._publish_state(client, cp_id, self._states[cp_id])

    def _answer_lost(self, cp_id: str, outcome: Outcome, error: aiomqtt.MqttError) -> None:
        # The CP gets no answer; per OCPP-J it times out and sends the call again.
        self.counters.answers_lost += 1
        self._log.warning(
            "answer.lost",
            cp_id=cp_id,
            message_id=outcome.message_id,
            action=outcome.action,
            error=str(error),
        )

    def _state_unpublished(self, cp_id: str, error: aiomqtt.MqttError) -> None:
        self._unpublished.add(cp_id)
        self._log.warning("state.unpublished", cp_id=cp_id, error=str(error))

    def _count_and_log(self, cp_id: str, outcome: Outcome, subprotocol: str | None) -> None:
        fields: dict[str, Any] = {
            "cp_id": cp_id,
            "message_id": outcome.message_id,
            "action": outcome.action,
        }
        if subprotocol != outcome.subprotocol:
            fields["subprotocol_received"] = subprotocol
        if outcome.kind is Kind.INVALID:
            self.counters.invalid += 1
            self._log.warning("frame.dropped", reason=outcome.detail, **fields)
        elif outcome.kind is Kind.RESPONSE:
            self.counters.responses += 1
            if outcome.error_code is not None:
                self._log.info(
                    "cp.callerror",
                    error_code=outcome.error_code,
                    description=outcome.detail,
                    **fields,
                )
            else:
                self._log.debug("cp.callresult", **fields)
        elif outcome.error_code is not None:
            self.counters.refused += 1
            self._log.info(
                "call.refused", error_code=outcome.error_code, description=outcome.detail, **fields
            )
        else:
            self.counters.answered += 1
            if outcome.change.boot is not None:
                self._log.info(
                    "cp.booted",
                    subprotocol=outcome.subprotocol,
                    interval=self._answer_config.heartbeat_interval,
                    **_hardware_summary(outcome.change.boot),
                    **fields,
                )
            else:
                self._log.debug("call.answered", **fields)


def _socket_options(nodelay: bool) -> list[tuple[int, int, int]]:
    # With Nagle's algorithm, an answer written right after the PUBACK of its call waits for
    # the broker's delayed TCP acknowledgement: about 40 ms per answer when traffic is light.
    return [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if nodelay else []


def _subprotocol(message: aiomqtt.Message) -> str | None:
    for key, value in getattr(message.properties, "UserProperty", None) or []:
        if key == "subprotocol":
            return str(value)
    return None


def _hardware_summary(boot: JsonObject) -> dict[str, Any]:
    station = boot.get("chargingStation")
    if isinstance(station, dict):  # OCPP 2.0.x
        return {"vendor": station.get("vendorName"), "model": station.get("model")}
    return {"vendor": boot.get("chargePointVendor"), "model": boot.get("chargePointModel")}


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches an MQTT filter with `+` and a trailing `#`."""
    levels, names = topic_filter.split("/"), topic.split("/")
    for position, level in enumerate(levels):
        if level == "#":
            return True
        if position >= len(names) or (level != "+" and level != names[position]):
            return False
    return len(levels) == len(names)
