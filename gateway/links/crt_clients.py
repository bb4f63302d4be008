"""MQTT 5 clients of the AWS Common Runtime (awscrt), made for asyncio and shared resources.

One `CrtClientFactory` per link owns what every client shares: one event-loop group, host
resolver and client bootstrap, one TLS context, and for SigV4 one credentials provider. The
AWS IoT Device SDK's builders (`awsiot.mqtt5_client_builder.mtls_from_path`,
`websockets_with_default_aws_signing`) would build a TLS context per client, about 5 ms of CPU
each: ten seconds for 2,000 charge points reconnecting at once. The factory makes the builders'
choices once instead: the device certificate, ALPN `x-amzn-mqtt-ca` (MQTT) or `http/1.1`
(WebSockets) on port 443, AWS IoT Core's flow-control limits (against IoT Core endpoints), the
SDK metrics username off, and the builders' SigV4 signature of the WebSocket handshake.

The CRT calls back on its own threads. Every event and completion is handed to the asyncio loop
through the factory's `LoopInbox`, many per wake-up under load; the one thing done on the CRT
thread itself is stopping a client whose connection dropped, so that it cannot reconnect on its
own before the gateway has decided whether the charge point was taken over by another replica.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import re
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from awscrt import auth, io, mqtt5
from awscrt.exceptions import AwsCrtError

from gateway.links.broker_url import parse_broker_url, region_of_iot_endpoint
from gateway.links.errors import LinkMisconfigured
from gateway.links.loop_inbox import LoopInbox
from gateway.links.tls import TlsConfigError, TlsMaterial, load_tls_material
from gateway.settings import MqttAuth, Settings

AWS_IOT_WEBSOCKETS_PORT = 443
SIGV4_SERVICE = "iotdevicegateway"
USER_REQUESTED_STOP = "AWS_ERROR_MQTT5_USER_REQUESTED_STOP"
SESSION_TAKEN_OVER = int(mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER)
_QOS = {0: mqtt5.QoS.AT_MOST_ONCE, 1: mqtt5.QoS.AT_LEAST_ONCE}

UserProperties = list[mqtt5.UserProperty]


def user_properties(properties: dict[str, str]) -> UserProperties:
    """MQTT 5 user properties for `CrtClient.publish`; build them once, not per message."""
    return [mqtt5.UserProperty(name, value) for name, value in properties.items()]


class CrtLinkError(Exception):
    """An MQTT operation through the CRT failed; the message says why."""


class BrokerRefused(CrtLinkError):
    """The broker answered with a failure reason code (e.g. NOT_AUTHORIZED): retrying won't help."""


@dataclass(frozen=True)
class CrtEndpoint:
    """Where and how the CRT clients connect."""

    host: str
    port: int
    tls: bool
    sigv4_region: str | None = None  # set: MQTT over WebSockets, handshake signed with SigV4
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def crt_endpoint(settings: Settings) -> CrtEndpoint:
    """The broker endpoint from `GATEWAY_MQTT_URL` (or `IOT_ENDPOINT`) and `GATEWAY_MQTT_AUTH`."""
    address = parse_broker_url(settings.mqtt_url)
    if settings.mqtt_auth is not MqttAuth.SIGV4:
        return CrtEndpoint(
            address.host, address.port, address.tls, None, address.username, address.password
        )
    region = settings.aws_region or region_of_iot_endpoint(address.host)
    if region is None:
        raise LinkMisconfigured(
            f"GATEWAY_MQTT_AUTH=sigv4 signs for an AWS region: set AWS_REGION (the broker host "
            f"{address.host!r} does not name one)"
        )
    explicit_port = urlsplit(settings.mqtt_url).port
    return CrtEndpoint(
        address.host,
        explicit_port or AWS_IOT_WEBSOCKETS_PORT,
        True,
        region,
        address.username,
        address.password,
    )


def alpn_protocols(endpoint: CrtEndpoint, material: TlsMaterial) -> tuple[str, ...]:
    """The configured ALPN list, or what the SDK's builders choose on port 443."""
    if material.alpn:
        return material.alpn
    if endpoint.port == AWS_IOT_WEBSOCKETS_PORT and io.is_alpn_available():
        # On 443, AWS IoT Core routes by ALPN: MQTT with x-amzn-mqtt-ca, WebSockets with http/1.1.
        return ("http/1.1",) if endpoint.sigv4_region else ("x-amzn-mqtt-ca",)
    return ()


class ClientEvents(Protocol):
    """What a client reports, always called on the asyncio loop."""

    def connected(self, client: CrtClient, rejoined: bool) -> None: ...

    def connect_failed(self, client: CrtClient, error: Exception) -> None: ...

    def disconnected(self, client: CrtClient, reason_code: int | None, error: Exception) -> None:
        """The connection dropped (never called for a stop the gateway asked for)."""

    def message(self, client: CrtClient, topic: str, payload: bytes) -> None: ...


class CrtClientFactory:
    """Builds CRT MQTT 5 clients that share one bootstrap, TLS context and credentials."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.endpoint = crt_endpoint(settings)
        self.material = load_tls_material(settings) if self.endpoint.tls else None
        self._event_loop_group = io.EventLoopGroup()
        self._host_resolver = io.DefaultHostResolver(self._event_loop_group)
        self._bootstrap = io.ClientBootstrap(self._event_loop_group, self._host_resolver)
        self._tls_context = self._make_tls_context()
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

    def new_client(
        self,
        client_id: str,
        events: ClientEvents,
        *,
        rejoin: bool,
        stop_when_dropped: bool,
        session_expiry: int | None = None,
        reconnect_delays_ms: tuple[int, int] = (100, 2000),
    ) -> CrtClient:
        """A client, not started; `rejoin` resumes the broker session of an earlier connection."""
        loop = asyncio.get_running_loop()
        if self._inbox is None or self._inbox.loop is not loop:
            self._inbox = LoopInbox(loop)
        return CrtClient(
            self,
            client_id,
            events,
            self._inbox,
            rejoin=rejoin,
            stop_when_dropped=stop_when_dropped,
            session_expiry=session_expiry,
            reconnect_delays_ms=reconnect_delays_ms,
        )

    def client_options(
        self,
        client_id: str,
        callbacks: _Callbacks,
        rejoin: bool,
        session_expiry: int | None,
        reconnect_delays_ms: tuple[int, int],
    ) -> mqtt5.ClientOptions:
        settings = self._settings
        socket_options = io.SocketOptions()
        socket_options.connect_timeout_ms = int(settings.mqtt_timeout * 1000)
        return mqtt5.ClientOptions(
            host_name=self.endpoint.host,
            port=self.endpoint.port,
            bootstrap=self._bootstrap,
            socket_options=socket_options,
            tls_ctx=self._tls_context,
            websocket_handshake_transform=self._handshake_transform,
            connect_options=mqtt5.ConnectPacket(
                client_id=client_id,
                keep_alive_interval_sec=settings.mqtt_keepalive,
                username=self.endpoint.username,
                password=self.endpoint.password,
                session_expiry_interval_sec=session_expiry,
            ),
            session_behavior=(
                mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS
                if rejoin
                else mqtt5.ClientSessionBehaviorType.CLEAN
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
            min_reconnect_delay_ms=reconnect_delays_ms[0],
            max_reconnect_delay_ms=reconnect_delays_ms[1],
            connack_timeout_ms=int(settings.mqtt_timeout * 1000),
            ack_timeout_sec=max(1, math.ceil(settings.mqtt_timeout)),
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
    """The CRT-thread side of one client: forwards each event to the asyncio loop.

    The CRT holds these callbacks until its client is destroyed, and it is destroyed only when
    the `CrtClient` is; a strong reference back would keep every closed channel alive forever.
    """

    def __init__(self, inbox: LoopInbox, stop_when_dropped: bool) -> None:
        self._post = inbox.post
        self._stop_when_dropped = stop_when_dropped
        self._client: weakref.ref[CrtClient] | None = None

    @property
    def client(self) -> CrtClient | None:
        return self._client() if self._client is not None else None

    @client.setter
    def client(self, client: CrtClient) -> None:
        self._client = weakref.ref(client)

    def on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        client = self.client
        packet = data.publish_packet
        if client is not None:
            self._post(client.events.message, client, packet.topic, bytes(packet.payload or b""))

    def on_connection_success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        client = self.client
        if client is not None:
            rejoined = bool(data.negotiated_settings.rejoined_session)
            self._post(client.events.connected, client, rejoined)

    def on_connection_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        client = self.client
        if client is not None:
            self._post(client.events.connect_failed, client, connect_error(data))

    def on_disconnection(self, data: mqtt5.LifecycleDisconnectData) -> None:
        client = self.client
        if client is None or is_user_requested_stop(data.exception):
            return
        if self._stop_when_dropped:
            client.stop()
        packet = data.disconnect_packet
        reason = int(packet.reason_code) if packet is not None else None
        self._post(client.events.disconnected, client, reason, data.exception)

    def on_stopped(self, data: mqtt5.LifecycleStoppedData) -> None:
        client = self.client
        if client is not None:
            self._post(client.stopped.set)


class CrtClient:
    """One CRT MQTT 5 client with awaitable operations."""

    def __init__(
        self,
        factory: CrtClientFactory,
        client_id: str,
        events: ClientEvents,
        inbox: LoopInbox,
        *,
        rejoin: bool,
        stop_when_dropped: bool,
        session_expiry: int | None,
        reconnect_delays_ms: tuple[int, int],
    ) -> None:
        self.client_id = client_id
        self.events = events
        self.stopped = asyncio.Event()
        self._inbox = inbox
        callbacks = _Callbacks(inbox, stop_when_dropped)
        options = factory.client_options(
            client_id, callbacks, rejoin, session_expiry, reconnect_delays_ms
        )
        self._client = mqtt5.Client(options)
        callbacks.client = self

    def start(self) -> None:
        self.stopped.clear()
        self._client.start()

    def stop(self) -> None:
        """Disconnect and stop reconnecting; safe from any thread, any number of times."""
        self._client.stop()

    async def publish(
        self, topic: str, payload: bytes, qos: int, properties: UserProperties
    ) -> None:
        """Publish; with QoS 1, returns once the broker acknowledged (PUBACK)."""
        packet = mqtt5.PublishPacket(
            topic=topic, payload=payload, qos=_QOS[qos], user_properties=properties
        )
        result = await _on_loop(self._client.publish(packet), self._inbox)
        puback = result.puback
        if puback is not None and puback.reason_code is not None and puback.reason_code >= 0x80:
            raise BrokerRefused(f"the broker refused the publish to {topic}: {_name(puback)}")

    async def subscribe(
        self, topic: str | list[str], qos: int, no_local: Collection[str] = ()
    ) -> None:
        """Subscribe; returns once the broker acknowledged the subscription (SUBACK).

        The broker does not send this client its own messages on the `no_local` topics.
        """
        topics = [topic] if isinstance(topic, str) else topic
        packet = mqtt5.SubscribePacket(
            subscriptions=[
                mqtt5.Subscription(topic_filter=each, qos=_QOS[qos], no_local=each in no_local)
                for each in topics
            ]
        )
        suback = await _on_loop(self._client.subscribe(packet), self._inbox)
        for each, code in zip(topics, suback.reason_codes or [], strict=False):
            if int(code) >= 0x80:
                refusal = getattr(code, "name", str(code))
                raise BrokerRefused(f"the broker refused the subscription to {each}: {refusal}")

    async def unsubscribe(self, topics: list[str]) -> None:
        await _on_loop(
            self._client.unsubscribe(mqtt5.UnsubscribePacket(topic_filters=topics)), self._inbox
        )


async def _on_loop(future: concurrent.futures.Future[Any], inbox: LoopInbox) -> Any:
    """Await a future the CRT completes on its own thread.

    Cancelling the wait leaves the CRT's future alone (cancelling it would make the CRT's own
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
    try:
        return await waiter
    except AwsCrtError as exc:
        raise CrtLinkError(describe_crt_error(exc)) from exc


def _name(puback: mqtt5.PubackPacket) -> str:
    code = puback.reason_code
    text = getattr(code, "name", str(code))
    return f"{text} ({puback.reason_string})" if puback.reason_string else text


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
    connack = data.connack_packet
    if connack is not None and connack.reason_code is not None and connack.reason_code >= 0x80:
        code = connack.reason_code
        name = getattr(code, "name", str(code))
        detail = f" ({connack.reason_string})" if connack.reason_string else ""
        return BrokerRefused(f"the broker refused the connection: {name}{detail}")
    error = data.exception
    return error if isinstance(error, Exception) else CrtLinkError("connection failed")


def describe_crt_error(error: BaseException) -> str:
    if isinstance(error, AwsCrtError):
        return f"{error.name}: {error.message}"
    return str(error)


def is_tls_error(error: BaseException) -> bool:
    return isinstance(error, AwsCrtError) and "_TLS_" in error.name
