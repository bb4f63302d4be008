"""Thing-deleted events from the AWS IoT registry: the charge point is closed (1008) at once.

AWS IoT publishes on `$aws/events/thing/<thingName>/deleted` when a Thing is deleted, once
registry events are enabled in the account:

    aws iot update-event-configurations --event-configurations '{"THING":{"Enabled":true}}'

The payload (https://docs.aws.amazon.com/iot/latest/developerguide/registry-events.html):

    {"eventType": "THING_EVENT", "operation": "DELETED", "thingName": "CP1",
     "eventId": "...", "timestamp": 1234567890123, "accountId": "...", "thingId": "...", ...}

The watcher subscribes with a small MQTT 5 client of its own (client id
`ocpp-gateway-events-<gateway id>`) on the gateway's broker, and for each deleted Thing calls
back, which makes the registry answer "no" for the id and closes its session. It connects like
the link does: `AiomqttEventWatcher` with TLS and a device certificate, `CrtEventWatcher`
(`events_crt.py`) over WebSockets signed with SigV4. Without events
(turned off, not enabled in the account, or the watcher disconnected) a deleted Thing is still
closed by the periodic re-validation, once its cached answer expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode

from gateway import strict_json
from gateway.backoff import backoff_delays
from gateway.links.broker_url import parse_broker_url
from gateway.registry.ids import is_valid_cp_id
from gateway.settings import MqttAuth, Settings
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

THING_EVENT = "THING_EVENT"
DELETED = "DELETED"
MAX_EVENT_BYTES = 65536
CLIENT_ID_PREFIX = "ocpp-gateway-events-"
RETRY_INITIAL = 0.5
RETRY_MAXIMUM = 30.0
_FIRST_FAILURE = 0x80  # MQTT SUBACK codes from here on refuse the subscription

OnDeleted = Callable[[str], Coroutine[Any, Any, object]]


class InvalidRegistryEvent(ValueError):
    """A message on the event topic that is not a registry event; the message says why."""


class SubscriptionRefused(Exception):
    """The broker refused the event subscription (an IoT policy without iot:Subscribe)."""


def deleted_thing_name(payload: bytes) -> str | None:
    """The `thingName` of a Thing-deleted event, or None for another registry event.

    Raises `InvalidRegistryEvent` for anything that is not a registry event.
    """
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidRegistryEvent(f"larger than {MAX_EVENT_BYTES} bytes")
    try:
        event = strict_json.decode_bytes(payload)
    except (UnicodeDecodeError, ValueError):
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


def refused_code(granted: Sequence[int | ReasonCode]) -> int | None:
    """The first refusal among a SUBACK's codes, or None when every subscription was granted."""
    for code in granted:
        value = code.value if isinstance(code, ReasonCode) else code
        if value >= _FIRST_FAILURE:
            return value
    return None


def refusal_message(topic: str, code: str) -> str:
    return (
        f"the broker refused the subscription to {topic!r} ({code}): allow iot:Subscribe on it "
        "and iot:Receive on its topics in the gateway's IoT policy, or set "
        "GATEWAY_REGISTRY_EVENTS_TOPIC= to turn it off"
    )


class RegistryEventWatcher:
    """What every watcher does once a message arrives, whatever its MQTT client."""

    def __init__(self, *, topic: str, client_id: str, timeout: float) -> None:
        self.topic = topic
        self.client_id = client_id
        self._timeout = timeout
        self._on_deleted: OnDeleted | None = None
        self._subscribed = asyncio.Event()
        self._first_attempt_done = asyncio.Event()
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
        self._connect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt_done.wait(), 2 * self._timeout)

    def _connect(self) -> None:
        raise NotImplementedError

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def close(self) -> None:
        tasks: list[asyncio.Task[object]] = [*self._callbacks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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


class AiomqttEventWatcher(RegistryEventWatcher):
    """The watcher on aiomqtt: plain MQTT, or TLS with a device certificate."""

    def __init__(
        self,
        *,
        broker_url: str,
        topic: str,
        client_id: str,
        timeout: float = 5.0,
        keepalive: int = 60,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(topic=topic, client_id=client_id, timeout=timeout)
        self._address = parse_broker_url(broker_url)
        self._keepalive = keepalive
        self._tls_context = tls_context
        self._runner: asyncio.Task[None] | None = None

    def _connect(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="registry-events")

    async def close(self) -> None:
        await cancel_and_wait(self._runner)
        self._runner = None
        await super().close()

    async def _run(self) -> None:
        delays = backoff_delays(initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM)
        while True:
            try:
                async with self._client() as client:
                    await self._subscribe(client)
                    delays = backoff_delays(initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM)
                    async for message in client.messages:
                        self.handle_event(str(message.topic), message.payload)
                problem = "the broker ended the subscription"
            except (aiomqtt.MqttError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
            except SubscriptionRefused as exc:
                problem = str(exc)
            except Exception as exc:
                # A bug must not end the watcher for good: log it in full, then start over.
                log.exception("registry.events_failed", topic=self.topic)
                problem = repr(exc)
            delay = next(delays)
            self._unavailable(problem, retry_in=delay)
            await asyncio.sleep(delay)

    def _client(self) -> aiomqtt.Client:
        address = self._address
        return aiomqtt.Client(
            hostname=address.host,
            port=address.port,
            identifier=self.client_id,
            username=address.username,
            password=address.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            timeout=self._timeout,
            keepalive=self._keepalive,
            tls_context=(self._tls_context or ssl.create_default_context())
            if address.tls
            else None,
        )

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        granted = await client.subscribe(self.topic, qos=1)
        code = refused_code(granted)
        if code is not None:
            raise SubscriptionRefused(refusal_message(self.topic, f"reason code 0x{code:02X}"))
        self._now_subscribed()


def build_event_watcher(settings: Settings, gateway_id: str) -> RegistryEventWatcher | None:
    """The watcher the settings ask for, or None when `GATEWAY_REGISTRY_EVENTS_TOPIC` is empty."""
    topic = settings.registry_events_topic
    if not topic:
        return None
    client_id = CLIENT_ID_PREFIX + gateway_id
    if settings.mqtt_auth is MqttAuth.SIGV4:
        # aiomqtt cannot sign WebSockets with SigV4; the CRT can.
        from gateway.registry.events_crt import CrtEventWatcher

        return CrtEventWatcher(settings, topic=topic, client_id=client_id)
    tls_context = None
    if parse_broker_url(settings.mqtt_url).tls:
        from gateway.links.tls import tls_context_for

        tls_context = tls_context_for(settings)
    return AiomqttEventWatcher(
        broker_url=settings.mqtt_url,
        topic=topic,
        client_id=client_id,
        timeout=settings.mqtt_timeout,
        keepalive=settings.mqtt_keepalive,
        tls_context=tls_context,
    )
