"""What the links read of the gateway's settings, and how they open broker connections.

`BrokerSettings` is the small section of `Settings` the link layer depends on (the same names,
so `GATEWAY_MQTT_TIMEOUT` is `mqtt_timeout` here too). `connection_factory` picks the MQTT
client library once (`GATEWAY_LINK_IMPL`); every policy above asks it for connections.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from gateway.links.broker_url import BrokerAddress, parse_broker_url, subscriptions_per_connection
from gateway.links.connection import BrokerConnection, ConnectionEvents, ConnectionOptions
from gateway.links.errors import LinkMisconfigured
from gateway.settings import LinkImpl, LinkMode, MqttAuth, Settings, fastest_link_impl

ConnectionFactory = Callable[[ConnectionOptions, ConnectionEvents], BrokerConnection]

# Unique per process: a gateway restarted with the same id never takes its predecessor's ids.
PROCESS_NONCE = f"{time.time_ns():x}"
_links = itertools.count(1)
# With SigV4, MQTT over WebSockets: AWS IoT Core takes both on 443 (told apart by ALPN).
AWS_IOT_WEBSOCKETS_PORT = 443


def _new_nonce() -> str:
    """Unique per link: two gateways with one GATEWAY_GATEWAY_ID never share a client id."""
    return f"{PROCESS_NONCE}.{next(_links)}"


@dataclass(frozen=True)
class BrokerSettings:
    gateway_id: str
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    link_mode: LinkMode = LinkMode.PER_CP
    link_impl: LinkImpl = field(default_factory=fastest_link_impl)
    mqtt_auth: MqttAuth = MqttAuth.CERTIFICATE
    aws_region: str | None = None
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_ca_pem: SecretStr | None = field(default=None, repr=False)
    mqtt_cert_pem: SecretStr | None = field(default=None, repr=False)
    mqtt_key_pem: SecretStr | None = field(default=None, repr=False)
    mqtt_alpn: tuple[str, ...] = ()
    qos: int = 1
    mqtt_timeout: float = 5.0
    mqtt_keepalive: int = 60
    broker_grace: float = 10.0
    topic_in: str = "{cp_id}/in"
    topic_out: str = "{cp_id}/out"
    topic_claim: str = "ocpp-gateway/claims/{cp_id}"
    topic_gateway: str = "ocpp-gateway/gateways/{gateway_id}"
    topic_presence: str = "{cp_id}/presence"
    topic_undelivered: str = "{cp_id}/undelivered"
    out_queue_limit: int = 1000
    shared_max_subscriptions: int | None = None
    nonce: str = field(default_factory=_new_nonce)

    @classmethod
    def from_settings(cls, settings: Settings, gateway_id: str) -> BrokerSettings:
        names = [name for name in cls.__dataclass_fields__ if name not in {"gateway_id", "nonce"}]
        values = {name: getattr(settings, name) for name in names}
        values["mqtt_alpn"] = tuple(settings.mqtt_alpn)
        return cls(gateway_id=gateway_id, **values)

    def client_id(self, role: str) -> str:
        """An MQTT client id of this gateway's own; a cpId can never contain `:`."""
        return f"ocpp-gateway:{role}:{self.gateway_id}:{self.nonce}"

    @property
    def address(self) -> BrokerAddress:
        """Where connections go: with SigV4, port 443 unless the URL names one."""
        address = parse_broker_url(self.mqtt_url)
        if self.mqtt_auth is MqttAuth.SIGV4:
            return replace(address, port=urlsplit(self.mqtt_url).port or AWS_IOT_WEBSOCKETS_PORT)
        return address

    @property
    def subscriptions_per_lane(self) -> int:
        """Subscriptions one connection of the shared link may hold (0: no limit)."""
        if self.shared_max_subscriptions is not None:
            return self.shared_max_subscriptions
        return subscriptions_per_connection(parse_broker_url(self.mqtt_url).host)

    @property
    def gateway_topic(self) -> str:
        return self.topic_gateway.format(gateway_id=self.gateway_id)

    @property
    def check_topic(self) -> str:
        """Where the broker liveness checks go (not retained, nobody needs to read them)."""
        return f"{self.gateway_topic}/check"


def connection_factory(broker: BrokerSettings) -> ConnectionFactory:
    """Connections through the library `GATEWAY_LINK_IMPL` names; raises `LinkMisconfigured`."""
    if broker.link_impl is LinkImpl.AWSCRT:
        try:  # the `aws` extra: awsiotsdk and awscrt
            from gateway.links.crt_connection import crt_connections
        except ImportError as exc:
            raise LinkMisconfigured(
                f"GATEWAY_LINK_IMPL=awscrt needs the AWS IoT Device SDK ({exc.name} is missing): "
                "pip install 'ocpp-mqtt-gateway[aws]'"
            ) from None
        return crt_connections(broker)
    from gateway.links.aiomqtt_connection import aiomqtt_connections

    return aiomqtt_connections(broker)
