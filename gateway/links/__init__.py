"""Links between the gateway and the message broker."""

from gateway.links.base import BrokerUnavailable, Channel, Link, LinkLost
from gateway.links.broker import BrokerSettings, connection_factory
from gateway.links.errors import LinkMisconfigured
from gateway.links.per_cp import PerCpLink
from gateway.links.shared import SharedLink
from gateway.observability import Metrics
from gateway.settings import LinkMode, Settings


def build_link(settings: Settings, metrics: Metrics, gateway_id: str) -> Link:
    """The link the settings ask for; raises `LinkMisconfigured` with what to fix.

    `GATEWAY_LINK_MODE` picks the policy (a connection per CP, or a few shared connections);
    `GATEWAY_LINK_IMPL` only picks the MQTT client library underneath.
    """
    broker = BrokerSettings.from_settings(settings, gateway_id)
    connect = connection_factory(broker)
    if settings.link_mode is LinkMode.PER_CP:
        return PerCpLink(broker, metrics, connect)
    return SharedLink(broker, metrics, connect)


__all__ = [
    "BrokerSettings",
    "BrokerUnavailable",
    "Channel",
    "Link",
    "LinkLost",
    "LinkMisconfigured",
    "PerCpLink",
    "SharedLink",
    "build_link",
]
