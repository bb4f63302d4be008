"""`BrokerConnection` over the AWS Common Runtime (awscrt, the AWS IoT Device SDK's MQTT 5 client).

The CRT does the protocol work in C on its own threads, several times cheaper per message than
paho-mqtt, reconnects by itself, and reaches AWS IoT Core with a device certificate (mutual TLS)
or over WebSockets signed with SigV4 from the default AWS credential chain (the ECS task role).

One `CrtFactory` per gateway owns what every connection shares (event-loop group, resolver,
bootstrap, TLS context, SigV4 credentials) and makes the choices of the SDK's builders
(`awsiot.mqtt5_client_builder`) once: they would build a TLS context per client, about 5 ms of
CPU each, ten seconds for 2,000 charge points reconnecting at once.

The CRT calls back on its own threads; every event and completion reaches the asyncio loop
through the factory's `LoopInbox`, many per wake-up under load. Only stopping a client that must
not reconnect by itself (`reconnect` off) happens on the CRT thread, so that it cannot take a
charge point back before the policy above has decided whether it should.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import math
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from awscrt import auth, io, mqtt5
from awscrt.exceptions import AwsCrtError

from gateway.links.broker import AWS_IOT_WEBSOCKETS_PORT, BrokerSettings, ConnectionFactory
from gateway.links.broker_url import region_of_iot_endpoint, topics_per_subscribe
from gateway.links.connection import (
    FIRST_FAILURE,
    SESSION_TAKEN_OVER,
    Acknowledgements,
    BrokerRefused,
    ConnectionEvents,
    ConnectionOptions,
    Down,
    DownReason,
    LinkError,
    NotConnected,
    Subscription,
    UserProperties,
    hand_over,
)
from gateway.links.errors import LinkMisconfigured
from gateway.links.loop_inbox import LoopInbox
from gateway.links.nodelay import NagleSwitch
from gateway.links.tls import TlsConfigError, TlsMaterial, load_tls_material
from gateway.settings import MqttAuth

SIGV4_SERVICE = "iotdevicegateway"
USER_REQUESTED_STOP = "AWS_ERROR_MQTT5_USER_REQUESTED_STOP"
_QOS = {0: mqtt5.QoS.AT_MOST_ONCE, 1: mqtt5.QoS.AT_LEAST_ONCE}


@dataclass(frozen=True)
class CrtEndpoint:
    """Where and how the CRT clients connect."""

    host: str
    port: int
    tls: bool
    sigv4_region: str | None = None  # set: MQTT over WebSockets, handshake signed with SigV4
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def crt_endpoint(settings: BrokerSettings) -> CrtEndpoint:
    """The broker endpoint from `GATEWAY_MQTT_URL` (or `IOT_ENDPOINT`) and `GATEWAY_MQTT_AUTH`."""
    address = settings.address
    region = None
    if settings.mqtt_auth is MqttAuth.SIGV4:
        region = settings.aws_region or region_of_iot_endpoint(address.host)
        if region is None:
            raise LinkMisconfigured(
                f"GATEWAY_MQTT_AUTH=sigv4 signs for an AWS region: set AWS_REGION (the broker "
                f"host {address.host!r} does not name one)"
            )
    return CrtEndpoint(
        address.host, address.port, address.tls, region, address.username, address.password
    )


def alpn_protocols(endpoint: CrtEndpoint, material: TlsMaterial) -> tuple[str, ...]:
    """The configured ALPN list, or what the SDK's builders choose on port 443."""
    if material.alpn:
        return material.alpn
    if endpoint.port == AWS_IOT_WEBSOCKETS_PORT and io.is_alpn_available():
        # On 443, AWS IoT Core routes by ALPN: MQTT with x-amzn-mqtt-ca, WebSockets with http/1.1.
        return ("http/1.1",) if endpoint.sigv4_region else ("x-amzn-mqtt-ca",)
    return ()


def crt_connections(broker: BrokerSettings) -> ConnectionFactory:
    factory = CrtFactory(broker)

    def connect(options: ConnectionOptions, events: ConnectionEvents) -> CrtConnection:
        return CrtConnection(factory, options, events)

    return connect


class CrtFactory:
    """What every CRT connection of the gateway shares; see the module's docstring."""

    def __init__(self, broker: BrokerSettings) -> None:
        self.broker = broker
        self.endpoint = crt_endpoint(broker)
        self.material = load_tls_material(broker) if self.endpoint.tls else None
        self._event_loop_group = io.EventLoopGroup()
        self._host_resolver = io.DefaultHostResolver(self._event_loop_group)
        self._bootstrap = io.ClientBootstrap(self._event_loop_group, self._host_resolver)
        self._tls_context = self._make_tls_context()
        self.nagle = NagleSwitch(self.endpoint.port)
        self._inbox: LoopInbox | None = None
        self._handshake_transform: Callable[..., None] | None = None
        if self.endpoint.sigv4_region is not None:
            credentials = auth.AwsCredentialsProvider.new_default_chain(self._bootstrap)
            self._handshake_transform = sigv4_handshake_signer(
                credentials, self.endpoint.sigv4_region
            )

    def _make_tls_context(self) -> io.ClientTlsContext | None:
        material = self.material
        if material is None:
            return None
        try:
            if material.cert_pem is not None and material.key_pem is not None:
                options = io.TlsContextOptions.create_client_with_mtls(
                    material.cert_pem, material.key_pem
                )
            else:
                options = io.TlsContextOptions()
            if material.ca_pem is not None:
                options.override_default_trust_store(material.ca_pem)
            options.alpn_list = list(alpn_protocols(self.endpoint, material)) or None
            return io.ClientTlsContext(options)
        except (AwsCrtError, RuntimeError) as exc:  # the CRT raises either
            raise TlsConfigError(
                f"the AWS CRT cannot use the configured CA, certificate or key ({_crt_name(exc)}): "
                "check that they are PEM and that the key belongs to the certificate"
            ) from None

    def inbox(self) -> LoopInbox:
        loop = asyncio.get_running_loop()
        if self._inbox is None or self._inbox.loop is not loop:
            self._inbox = LoopInbox(loop)
        return self._inbox

    def client_options(
        self, options: ConnectionOptions, resume: bool, callbacks: _Callbacks
    ) -> mqtt5.ClientOptions:
        broker = self.broker
        socket_options = io.SocketOptions()
        socket_options.connect_timeout_ms = int(broker.mqtt_timeout * 1000)
        will = None
        if options.will is not None:
            will = mqtt5.PublishPacket(
                topic=options.will.topic,
                payload=options.will.payload,
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                retain=options.will.retain,
            )
        return mqtt5.ClientOptions(
            host_name=self.endpoint.host,
            port=self.endpoint.port,
            bootstrap=self._bootstrap,
            socket_options=socket_options,
            tls_ctx=self._tls_context,
            websocket_handshake_transform=self._handshake_transform,
            connect_options=mqtt5.ConnectPacket(
                client_id=options.client_id,
                keep_alive_interval_sec=broker.mqtt_keepalive,
                username=self.endpoint.username,
                password=self.endpoint.password,
                session_expiry_interval_sec=options.session_expiry,
                receive_maximum=options.receive_maximum,
                will=will,
            ),
            # A clean session first; every later connection, ours or the CRT's own, resumes it.
            session_behavior=(
                mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS
                if resume
                else mqtt5.ClientSessionBehaviorType.REJOIN_POST_SUCCESS
            ),
            # On AWS IoT Core, pace each client to its 100 publishes/s per connection (it discards
            # the excess, e.g. when a CP flushes its offline queue); costs up to ~10 ms a publish.
            extended_validation_and_flow_control_options=(
                mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS
                if region_of_iot_endpoint(self.endpoint.host) is not None
                else mqtt5.ExtendedValidationAndFlowControlOptions.NONE
            ),
            # A publish while disconnected fails at once; the channel holds and retries it.
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            min_reconnect_delay_ms=int(options.min_delay * 1000),
            max_reconnect_delay_ms=int(options.max_delay * 1000),
            connack_timeout_ms=int(broker.mqtt_timeout * 1000),
            # The connection's own deadline (mqtt_timeout) comes first and marks it stalled.
            ack_timeout_sec=math.ceil(broker.mqtt_timeout * 2) + 1,
            on_publish_callback_fn=callbacks.on_publish,
            on_lifecycle_event_connection_success_fn=callbacks.on_connection_success,
            on_lifecycle_event_connection_failure_fn=callbacks.on_connection_failure,
            on_lifecycle_event_disconnection_fn=callbacks.on_disconnection,
            on_lifecycle_event_stopped_fn=callbacks.on_stopped,
            disable_metrics=True,
        )


def sigv4_handshake_signer(
    credentials: auth.AwsCredentialsProvider, region: str
) -> Callable[..., None]:
    """The WebSocket handshake transform of `websockets_with_default_aws_signing`."""
    signing_config = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4,
        signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=credentials,
        region=region,
        service=SIGV4_SERVICE,
        # AWS IoT expects X-Amz-Security-Token appended to, not covered by, the signature.
        omit_session_token=True,
    )

    def sign(transform_args: mqtt5.WebsocketHandshakeTransformArgs, **_: Any) -> None:
        try:
            signing = auth.aws_sign_request(transform_args.http_request, signing_config)
        except Exception as exc:
            transform_args.set_done(exc)
            return
        signing.add_done_callback(lambda done: transform_args.set_done(done.exception()))

    return sign


class _Callbacks:
    """The CRT-thread side of one client: forwards each event to its connection on the loop.

    The CRT holds these callbacks until its client is destroyed; a strong reference back to the
    connection would keep every closed channel alive forever.
    """

    def __init__(
        self, connection: CrtConnection, inbox: LoopInbox, stop_when_dropped: bool
    ) -> None:
        self._connection = weakref.ref(connection)
        self._post = inbox.post
        self._stop_when_dropped = stop_when_dropped
        self.client: mqtt5.Client | None = None
        self.stopped = asyncio.Event()

    def _tell(self, event: Callable[..., None], *args: Any) -> None:
        """Run `event(connection, self, *args)` on the loop, unless the connection is gone."""
        connection = self._connection()
        if connection is not None:
            self._post(event, connection, self, *args)

    def on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        self._tell(CrtConnection.received, packet.topic, bytes(packet.payload or b""))

    def on_connection_success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        self._tell(CrtConnection.connected)

    def on_connection_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        self._stop_if_asked()
        self._tell(CrtConnection.dropped, None, connect_error(data), True)

    def on_disconnection(self, data: mqtt5.LifecycleDisconnectData) -> None:
        if is_user_requested_stop(data.exception):
            return
        self._stop_if_asked()
        packet = data.disconnect_packet
        reason = int(packet.reason_code) if packet is not None else None
        self._tell(CrtConnection.dropped, reason, data.exception, False)

    def on_stopped(self, data: mqtt5.LifecycleStoppedData) -> None:
        self._post(self.stopped.set)

    def _stop_if_asked(self) -> None:
        if self._stop_when_dropped and self.client is not None:
            self.client.stop()  # here, on the CRT thread: it must not reconnect by itself


class CrtConnection:
    def __init__(
        self, factory: CrtFactory, options: ConnectionOptions, events: ConnectionEvents
    ) -> None:
        self.client_id = options.client_id
        self.max_topics_per_packet = topics_per_subscribe(factory.endpoint.host)
        self._factory = factory
        self._options = options
        self._events = events
        self._timeout = factory.broker.mqtt_timeout
        self._qos = _QOS[factory.broker.qos]
        self._inbox: LoopInbox | None = None  # the running loop's, from the first start()
        self._resume = not options.clean_start
        self._current: _Callbacks | None = None  # the live client's, None once stopped
        self._acknowledgements: Acknowledgements | None = None  # the live client's
        self._up = False

    @property
    def up(self) -> bool:
        return self._up

    def start(self) -> None:
        if self._current is not None:
            return
        if self._inbox is None:
            self._inbox = self._factory.inbox()
        callbacks = _Callbacks(self, self._inbox, stop_when_dropped=not self._options.reconnect)
        self._acknowledgements = Acknowledgements(
            self._inbox.loop, self._timeout, functools.partial(self._stall, callbacks)
        )
        client = mqtt5.Client(self._factory.client_options(self._options, self._resume, callbacks))
        callbacks.client = client
        self._current = callbacks
        client.start()

    async def stop(self) -> None:
        callbacks = self._release()
        if callbacks is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(callbacks.stopped.wait(), self._timeout)

    def _release(self) -> _Callbacks | None:
        """Stop the live client (its events are ignored from now on)."""
        callbacks, self._current, self._up = self._current, None, False
        if self._acknowledgements is not None:
            self._acknowledgements.close()
            self._acknowledgements = None
        if callbacks is not None and callbacks.client is not None:
            # A DISCONNECT, so the broker drops the will: this is no unannounced loss.
            callbacks.client.stop(mqtt5.DisconnectPacket())
        return callbacks

    # -- client events, on the asyncio loop ------------------------------------------------

    def connected(self, callbacks: _Callbacks) -> None:
        if callbacks is not self._current:
            return
        self._factory.nagle.turn_off_soon()  # the CRT has no TCP_NODELAY option
        self._up = True
        self._resume = True
        self._events.connection_up()

    def dropped(
        self, callbacks: _Callbacks, reason: int | None, error: BaseException, connecting: bool
    ) -> None:
        if callbacks is not self._current:
            return
        self._up = False
        if not self._options.reconnect:
            self._current = None  # stopped on the CRT thread already
        if connecting:
            down = Down(DownReason.DROPPED, f"cannot connect: {describe_crt_error(error)}")
        elif reason == SESSION_TAKEN_OVER:
            down = Down(DownReason.TAKEN_OVER, "session taken over")
        else:
            down = Down(DownReason.DROPPED, describe_crt_error(error))
        self._events.connection_down(down)

    def received(self, callbacks: _Callbacks, topic: str, payload: bytes) -> None:
        if callbacks is self._current:
            hand_over(self._events, self.client_id, topic, payload)

    # -- operations ------------------------------------------------------------------------

    def _client(self) -> mqtt5.Client:
        callbacks = self._current
        if not self._up or callbacks is None or callbacks.client is None:
            raise NotConnected("not connected to the broker")
        return callbacks.client

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: UserProperties = ()
    ) -> None:
        packet = mqtt5.PublishPacket(
            topic=topic,
            payload=payload,
            qos=self._qos,
            retain=retain,
            user_properties=_user_properties(properties),
        )
        result = await self._acknowledged(self._client().publish(packet), f"publish to {topic}")
        refusal = _refusal(result.puback)
        if refusal is not None:
            raise BrokerRefused(f"the broker refused the publish to {topic}: {refusal}")

    async def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        packet = mqtt5.SubscribePacket(
            subscriptions=[
                mqtt5.Subscription(topic_filter=each.topic, qos=self._qos, no_local=each.no_local)
                for each in subscriptions
            ]
        )
        suback = await self._acknowledged(self._client().subscribe(packet), "subscribe")
        for each, code in zip(subscriptions, suback.reason_codes or [], strict=False):
            if int(code) >= FIRST_FAILURE:
                raise BrokerRefused(
                    f"the broker refused the subscription to {each.topic}: {_reason(code)}"
                )

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        packet = mqtt5.UnsubscribePacket(topic_filters=list(topics))
        await self._acknowledged(self._client().unsubscribe(packet), "unsubscribe")

    async def _acknowledged(self, future: concurrent.futures.Future[Any], what: str) -> Any:
        # Both set: `_client()` just found the client up.
        assert self._acknowledgements is not None
        assert self._inbox is not None
        try:
            return await self._acknowledgements.wait(_on_loop(future, self._inbox), what)
        except AwsCrtError as exc:
            raise LinkError(describe_crt_error(exc)) from exc

    def _stall(self, callbacks: _Callbacks, detail: str) -> None:
        if callbacks is not self._current or not self._up:
            return
        self._release()
        self._events.connection_down(Down(DownReason.STALLED, detail))
        if self._options.reconnect:
            self.start()


def _on_loop(future: concurrent.futures.Future[Any], inbox: LoopInbox) -> asyncio.Future[Any]:
    """A future of the loop that follows one the CRT completes on its own thread.

    Cancelling it leaves the CRT's future alone (cancelling that one would make the CRT's own
    completion fail on its thread).
    """
    waiter: asyncio.Future[Any] = inbox.loop.create_future()

    def settle(done: concurrent.futures.Future[Any]) -> None:
        if waiter.done():
            return
        error = done.exception()
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    future.add_done_callback(lambda done: inbox.post(settle, done))
    return waiter


@functools.lru_cache(maxsize=256)  # a gateway publishes with a handful of property sets
def _user_properties(properties: UserProperties) -> list[mqtt5.UserProperty] | None:
    return [mqtt5.UserProperty(name, value) for name, value in properties] or None


def _refusal(packet: mqtt5.PubackPacket | mqtt5.ConnackPacket | None) -> str | None:
    """Why the broker refused, from its acknowledgement; None when it did not."""
    if packet is None or packet.reason_code is None or packet.reason_code < FIRST_FAILURE:
        return None
    return _reason(packet.reason_code, packet.reason_string)


def _reason(code: object, reason_string: str | None = None) -> str:
    name = getattr(code, "name", str(code))
    return f"{name} ({reason_string})" if reason_string else name


def _crt_name(error: Exception) -> str:
    """`AWS_IO_TLS_CTX_ERROR` from an AwsCrtError, or from "1033 (AWS_IO_TLS_CTX_ERROR): ..."."""
    if isinstance(error, AwsCrtError):
        return str(error.name)
    match = re.search(r"\((AWS_[A-Z0-9_]+)\)", str(error))
    return match.group(1) if match else type(error).__name__


def is_user_requested_stop(error: BaseException | None) -> bool:
    return isinstance(error, AwsCrtError) and error.name == USER_REQUESTED_STOP


def connect_error(data: mqtt5.LifecycleConnectFailureData) -> Exception:
    """The most telling error of a failed connection: the broker's CONNACK refusal if any."""
    refusal = _refusal(data.connack_packet)
    if refusal is not None:
        return BrokerRefused(f"the broker refused the connection: {refusal}")
    error = data.exception
    return error if isinstance(error, Exception) else LinkError("connection failed")


def describe_crt_error(error: BaseException) -> str:
    if isinstance(error, AwsCrtError):
        return f"{error.name}: {error.message}"
    return str(error)
