"""`BrokerConnection` over aiomqtt (paho-mqtt): pure Python, no AWS dependency.

aiomqtt has no automatic reconnection: a supervisor task enters a new client after every drop,
with back-off, while `reconnect` is on. Operations carry their own deadline; when one passes, the
socket is shut down so the drop is noticed at once (`STALLED`), instead of at the keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import backoff_delays
from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.broker_url import BrokerAddress, parse_broker_url, topics_per_subscribe
from gateway.links.connection import (
    FIRST_FAILURE,
    SESSION_TAKEN_OVER,
    BrokerRefused,
    ConnectionEvents,
    ConnectionOptions,
    Down,
    DownReason,
    LinkError,
    NotConnected,
    Subscription,
    UserProperties,
    acknowledged,
    hand_over,
)
from gateway.links.tls import tls_context_for, tls_failure
from gateway.tasks import cancel_and_wait

# Many QoS 1 publishes in flight is normal for a gateway; aiomqtt would warn on each one.
PENDING_CALLS_WARNING = 1_000_000
MAX_INFLIGHT = 65535
NUDGE_INTERVAL = 0.25
# Our own deadline (`acknowledged`) bounds every operation; aiomqtt's would be a second timer and,
# for a publish, a task per message.
NO_DEADLINE = math.inf


def make_client(
    address: BrokerAddress,
    identifier: str,
    timeout: float,
    keepalive: int,
    tls_context: ssl.SSLContext | None = None,
    **options: Any,
) -> aiomqtt.Client:
    """An MQTT 5 client; `tls_context` is the caller's shared one (default: the system's CAs)."""
    if address.tls and tls_context is None:
        tls_context = ssl.create_default_context()
    # Nagle's algorithm would hold small MQTT packets back for up to 40 ms.
    options.setdefault("socket_options", [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    client = aiomqtt.Client(
        hostname=address.host,
        port=address.port,
        identifier=identifier,
        username=address.username,
        password=address.password,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=timeout,
        keepalive=keepalive,
        tls_context=tls_context if address.tls else None,
        **options,
    )
    client.pending_calls_threshold = PENDING_CALLS_WARNING
    return client


@functools.lru_cache(maxsize=256)  # a gateway publishes with a handful of property sets
def publish_properties(properties: UserProperties) -> Properties | None:
    """PUBLISH properties carrying MQTT 5 user properties (None when there are none)."""
    if not properties:
        return None
    packet = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    packet.UserProperty = list(properties)
    return packet


def aiomqtt_connections(broker: BrokerSettings) -> ConnectionFactory:
    address = parse_broker_url(broker.mqtt_url)
    tls_context = tls_context_for(broker)  # one for every connection of the gateway

    def connect(options: ConnectionOptions, events: ConnectionEvents) -> AiomqttConnection:
        return AiomqttConnection(address, broker, options, events, tls_context)

    return connect


class AiomqttConnection:
    def __init__(
        self,
        address: BrokerAddress,
        broker: BrokerSettings,
        options: ConnectionOptions,
        events: ConnectionEvents,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.client_id = options.client_id
        self.max_topics_per_packet = topics_per_subscribe(address.host)
        self._address = address
        self._broker = broker
        self._options = options
        self._events = events
        self._tls_context = tls_context
        self._timeout = broker.mqtt_timeout
        self._resume = not options.clean_start
        self._client: aiomqtt.Client | None = None
        self._stalled: Down | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name=self.client_id)

    async def stop(self) -> None:
        await cancel_and_wait(self._supervisor)
        self._supervisor = None

    async def _supervise(self) -> None:
        delays = self._delays()
        while True:
            down, was_up = await self._run_once()
            self._events.connection_down(down)
            if not self._options.reconnect:
                return
            if was_up:
                delays = self._delays()
            await asyncio.sleep(next(delays))

    def _delays(self) -> Any:
        return backoff_delays(initial=self._options.min_delay, maximum=self._options.max_delay)

    async def _run_once(self) -> tuple[Down, bool]:
        client = self._new_client()
        nudge = asyncio.create_task(_write_pending(client))
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            return Down(DownReason.DROPPED, f"cannot connect: {_describe(exc)}"), False
        finally:
            nudge.cancel()
        self._resume = True
        self._stalled = None
        self._client = client
        try:
            self._events.connection_up()
            async for message in client.messages:
                self._dispatch(message)
            down = Down(DownReason.DROPPED, "the broker ended the connection")
        except aiomqtt.MqttError as exc:
            down = self._stalled or Down(
                DownReason.TAKEN_OVER if _was_taken_over(exc) else DownReason.DROPPED,
                _describe(exc),
            )
        finally:
            self._client = None
            await _disconnect(client, self._timeout)
        return down, True

    def _new_client(self) -> aiomqtt.Client:
        options = self._options
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = options.session_expiry
        extra: dict[str, Any] = {}
        if options.receive_maximum is not None:
            properties.ReceiveMaximum = options.receive_maximum
            extra["max_inflight_messages"] = MAX_INFLIGHT
        if options.will is not None:
            will = options.will
            extra["will"] = aiomqtt.Will(will.topic, will.payload, qos=1, retain=will.retain)
        return make_client(
            self._address,
            self.client_id,
            self._timeout,
            self._broker.mqtt_keepalive,
            tls_context=self._tls_context,
            clean_start=not self._resume,
            properties=properties,
            **extra,
        )

    def _dispatch(self, message: aiomqtt.Message) -> None:
        if isinstance(message.payload, bytes | bytearray):
            hand_over(self._events, self.client_id, message.topic.value, bytes(message.payload))

    # -- operations ------------------------------------------------------------------------

    def _connected(self) -> aiomqtt.Client:
        if self._client is None:
            raise NotConnected("not connected to the broker")
        return self._client

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: UserProperties = ()
    ) -> None:
        client = self._connected()
        packet = publish_properties(properties)
        await self._acknowledged(
            client,
            client.publish(
                topic,
                payload,
                qos=self._broker.qos,
                retain=retain,
                properties=packet,
                timeout=NO_DEADLINE,
            ),
            f"publish to {topic}",
        )

    async def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        client = self._connected()
        qos = self._broker.qos
        granted = await self._acknowledged(
            client,
            client.subscribe(
                [
                    (each.topic, SubscribeOptions(qos=qos, noLocal=each.no_local))
                    for each in subscriptions
                ],
                timeout=NO_DEADLINE,
            ),
            "subscribe",
        )
        for each, code in zip(subscriptions, granted or [], strict=False):
            value = getattr(code, "value", code)
            if isinstance(value, int) and value >= FIRST_FAILURE:
                name = code.getName() if hasattr(code, "getName") else f"0x{value:02X}"
                raise BrokerRefused(f"the broker refused the subscription to {each.topic}: {name}")

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        client = self._connected()
        await self._acknowledged(
            client, client.unsubscribe(list(topics), timeout=NO_DEADLINE), "unsubscribe"
        )

    async def _acknowledged(self, client: aiomqtt.Client, operation: Any, what: str) -> Any:
        stall = functools.partial(self._stall, client)
        try:
            return await acknowledged(operation, what, self._timeout, stall)
        except aiomqtt.MqttError as exc:
            raise LinkError(_describe(exc)) from exc

    def _stall(self, client: aiomqtt.Client, detail: str) -> None:
        if client is not self._client or self._stalled is not None:
            return
        self._stalled = Down(DownReason.STALLED, detail)
        # Shutting the socket down makes paho notice the loss now; DISCONNECT could not be sent
        # to a broker that does not read.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


async def _write_pending(client: aiomqtt.Client) -> None:
    """Write what paho has queued while the CONNECT waits for its CONNACK.

    aiomqtt registers the socket's writer from paho's connecting thread; when a socket of a
    closing connection had the same file descriptor a moment before, that registration can be
    lost (seen under uvloop during takeovers), and the CONNECT would sit unsent. Writing from
    here is harmless when nothing is pending.
    """
    paho_client = client._client
    while True:
        await asyncio.sleep(NUDGE_INTERVAL)
        if paho_client.want_write():
            with contextlib.suppress(Exception):
                paho_client.loop_write()


async def _disconnect(client: aiomqtt.Client, within: float) -> None:
    with contextlib.suppress(
        aiomqtt.MqttError, paho.WebsocketConnectionError, OSError, TimeoutError
    ):
        async with asyncio.timeout(within):
            await client.__aexit__(None, None, None)


def _describe(error: aiomqtt.MqttError) -> str:
    return tls_failure(error) or str(error) or type(error).__name__


def _was_taken_over(error: BaseException) -> bool:
    """Whether an aiomqtt error (or its cause) is the broker's "session taken over"."""
    current: BaseException | None = error
    while current is not None:
        code = getattr(current, "rc", None) if isinstance(current, aiomqtt.MqttCodeError) else None
        if getattr(code, "value", code) == SESSION_TAKEN_OVER:
            return True
        current = current.__cause__ or current.__context__
    return False
