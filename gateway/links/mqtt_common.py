"""What the aiomqtt-based links share: client construction and disconnect reasons."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.links.broker_url import BrokerAddress

# MQTT 5 DISCONNECT reason code sent by the broker when another client connects with the
# same client identifier ("Session taken over").
SESSION_TAKEN_OVER = 0x8E


PENDING_CALLS_WARNING = 1_000_000


def make_client(
    address: BrokerAddress,
    identifier: str,
    timeout: float,
    keepalive: int,
    tls_context: ssl.SSLContext | None = None,
    **options: Any,
) -> aiomqtt.Client:
    """An MQTT 5 client; `tls_context` is the link's shared one (default: the system's CAs)."""
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
    # Many QoS 1 publishes in flight is normal for a gateway; aiomqtt would warn on each one.
    client.pending_calls_threshold = PENDING_CALLS_WARNING
    return client


def subprotocol_property(subprotocol: str) -> Properties:
    """PUBLISH properties carrying the CP's negotiated subprotocol as a user property."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = [("subprotocol", subprotocol)]
    return properties


def was_taken_over(error: BaseException) -> bool:
    """Whether an aiomqtt error (or its cause) is the broker's "session taken over"."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, aiomqtt.MqttCodeError):
            code = getattr(current.rc, "value", current.rc)
            if code == SESSION_TAKEN_OVER:
                return True
        current = current.__cause__ or current.__context__
    return False
