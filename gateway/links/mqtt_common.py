"""What the aiomqtt-based links share: client construction and disconnect reasons."""

from __future__ import annotations

import ssl
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.links.broker_url import BrokerAddress

# MQTT 5 DISCONNECT reason code sent by the broker when another client connects with the
# same client identifier ("Session taken over").
SESSION_TAKEN_OVER = 0x8E


def make_client(
    address: BrokerAddress, identifier: str, timeout: float, keepalive: int, **options: Any
) -> aiomqtt.Client:
    tls_context = ssl.create_default_context() if address.tls else None
    return aiomqtt.Client(
        hostname=address.host,
        port=address.port,
        identifier=identifier,
        username=address.username,
        password=address.password,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=timeout,
        keepalive=keepalive,
        tls_context=tls_context,
        **options,
    )


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
