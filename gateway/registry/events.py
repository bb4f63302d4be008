"""Thing-deleted events from the AWS IoT registry: the charge point is closed (1008) at once.

AWS IoT publishes on `$aws/events/thing/<thingName>/deleted` when a Thing is deleted, once
registry events are enabled in the account:

    aws iot update-event-configurations --event-configurations '{"THING":{"Enabled":true}}'

The payload (https://docs.aws.amazon.com/iot/latest/developerguide/registry-events.html):

    {"eventType": "THING_EVENT", "operation": "DELETED", "thingName": "CP1",
     "eventId": "...", "timestamp": 1234567890123, "accountId": "...", "thingId": "...", ...}

The watcher subscribes with a broker connection of its own (client id
`ocpp-gateway:events:<gateway id>:<process>`), through the same MQTT library and credentials as
the link (`GATEWAY_LINK_IMPL`; SigV4 needs awscrt), and for each deleted Thing calls back,
which makes the registry answer "no" for the id and closes its session. Without events (turned
off, not enabled in the account, or the watcher disconnected) a deleted Thing is still closed by
the periodic re-validation, once its cached answer expires.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from gateway import strict_json
from gateway.backoff import backoff_delays
from gateway.links.broker import BrokerSettings, ConnectionFactory, connection_factory
from gateway.links.connection import (
    BrokerRefused,
    ConnectionOptions,
    Down,
    LinkError,
    Subscription,
)
from gateway.registry.ids import is_valid_cp_id
from gateway.settings import Settings

log = structlog.get_logger(__name__)

THING_EVENT = "THING_EVENT"
DELETED = "DELETED"
MAX_EVENT_BYTES = 65536
RETRY_INITIAL = 0.5
RETRY_MAXIMUM = 30.0

OnDeleted = Callable[[str], Coroutine[Any, Any, object]]


class InvalidRegistryEvent(ValueError):
    """A message on the event topic that is not a registry event; the message says why."""


def deleted_thing_name(payload: bytes) -> str | None:
    """The `thingName` of a Thing-deleted event, or None for another registry event.

    Raises `InvalidRegistryEvent` for anything that is not a registry event.
    """
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidRegistryEvent(f"larger than {MAX_EVENT_BYTES} bytes")
    try:
        event = strict_json.decode_bytes(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidRegistryEvent("not JSON") from None
    if not isinstance(event, dict):
        raise InvalidRegistryEvent("not a JSON object")
    event_type = event.get("eventType")
    if not isinstance(event_type, str):
        raise InvalidRegistryEvent("no `eventType` string")
    if event_type != THING_EVENT:
        return None  # a Thing type or Thing group event
    operation = event.get("operation")
    if not isinstance(operation, str):
        raise InvalidRegistryEvent("a THING_EVENT without an `operation` string")
    if operation != DELETED:
        return None  # CREATED or UPDATED
    name = event.get("thingName")
    if not isinstance(name, str) or not name:
        raise InvalidRegistryEvent("a DELETED THING_EVENT without a `thingName` string")
    return name


def refusal_message(topic: str, code: str) -> str:
    return (
        f"the broker refused the subscription to {topic!r} ({code}): allow iot:Subscribe on it "
        "and iot:Receive on its topics in the gateway's IoT policy, or set "
        "GATEWAY_REGISTRY_EVENTS_TOPIC= to turn it off"
    )


class RegistryEventWatcher:
    """Keeps a subscription to the registry's event topic; calls back for each deleted Thing."""

    def __init__(
        self, connect: ConnectionFactory, *, topic: str, client_id: str, timeout: float
    ) -> None:
        self.topic = topic
        self.client_id = client_id
        self._timeout = timeout
        self._connection = connect(
            ConnectionOptions(client_id, min_delay=RETRY_INITIAL, max_delay=RETRY_MAXIMUM), self
        )
        self._on_deleted: OnDeleted | None = None
        self._subscribed = asyncio.Event()
        self._first_attempt_done = asyncio.Event()
        self._subscriber: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[object]] = set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def start(self, on_deleted: OnDeleted) -> None:
        """Subscribe, and keep subscribed, in the background; `on_deleted(cp_id)` per event.

        Returns once the first attempt has succeeded or failed (failures are logged and
        retried): an unreachable broker never stops the gateway from starting.
        """
        self._on_deleted = on_deleted
        self._connection.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt_done.wait(), 2 * self._timeout)

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def close(self) -> None:
        tasks: list[asyncio.Task[Any]] = [*self._callbacks]
        if self._subscriber is not None:
            tasks.append(self._subscriber)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._connection.stop()

    # -- connection events -----------------------------------------------------------------

    def connection_up(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
        self._subscriber = asyncio.create_task(self._subscribe(), name="registry-events")

    def connection_down(self, down: Down) -> None:
        self._unavailable(str(down), retry_in=None)

    def message(self, topic: str, payload: bytes) -> None:
        self.handle_event(topic, payload)

    # --------------------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        """Subscribe (the session is clean after every connection); retry a refusal."""
        delays = backoff_delays(initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM)
        while True:
            try:
                await self._connection.subscribe([Subscription(self.topic)])
            except BrokerRefused as exc:
                problem = refusal_message(self.topic, str(exc).rpartition(": ")[2])
            except LinkError as exc:  # the connection dropped: it subscribes again once up
                self._unavailable(str(exc), retry_in=None)
                return
            else:
                self._now_subscribed()
                return
            delay = next(delays)
            self._unavailable(problem, retry_in=delay)
            await asyncio.sleep(delay)

    def _now_subscribed(self) -> None:
        self._subscribed.set()
        self._first_attempt_done.set()
        log.info("registry.events_subscribed", topic=self.topic, client_id=self.client_id)

    def _unavailable(self, problem: str, retry_in: float | None) -> None:
        self._subscribed.clear()
        self._first_attempt_done.set()
        log.warning(
            "registry.events_unavailable",
            topic=self.topic,
            error=problem,
            retry_in=None if retry_in is None else round(retry_in, 2),
            hint="deleted Things are still closed by re-validation, after their cache expires",
        )

    def handle_event(self, topic: str, payload: object) -> None:
        try:
            if not isinstance(payload, bytes | bytearray):
                raise InvalidRegistryEvent("not a binary payload")
            name = deleted_thing_name(bytes(payload))
        except InvalidRegistryEvent as exc:
            log.warning("registry.event_rejected", topic=topic, reason=str(exc))
            return
        if name is None:
            log.debug("registry.event_ignored", topic=topic)
            return
        if not is_valid_cp_id(name):
            log.debug("registry.event_ignored", topic=topic, thing=name, reason="not a cp id")
            return
        log.info("registry.thing_deleted", cp_id=name, topic=topic)
        assert self._on_deleted is not None
        callback = asyncio.create_task(self._on_deleted(name), name=f"registry-deleted-{name}")
        self._callbacks.add(callback)
        callback.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task[object]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "registry.thing_deleted_failed", task=task.get_name(), error=repr(task.exception())
            )


def build_event_watcher(settings: Settings, gateway_id: str) -> RegistryEventWatcher | None:
    """The watcher the settings ask for, or None when `GATEWAY_REGISTRY_EVENTS_TOPIC` is empty."""
    topic = settings.registry_events_topic
    if not topic:
        return None
    broker = BrokerSettings.from_settings(settings, gateway_id)
    return RegistryEventWatcher(
        connection_factory(broker),
        topic=topic,
        client_id=broker.client_id("events"),
        timeout=settings.mqtt_timeout,
    )
