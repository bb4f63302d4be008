"""Links between the gateway and the message broker."""

from gateway.links.base import BrokerUnavailable, Channel, Link, LinkLost
from gateway.links.per_cp import PerCpLink
from gateway.links.shared import SharedLink
from gateway.observability import Metrics
from gateway.settings import LinkMode, Settings


def build_link(settings: Settings, metrics: Metrics, gateway_id: str) -> Link:
    if settings.link_mode is LinkMode.PER_CP:
        return PerCpLink(settings, metrics, gateway_id)
    if settings.link_mode is LinkMode.SHARED:
        return SharedLink(settings, metrics, gateway_id)
    raise ValueError(f"unknown link mode {settings.link_mode!r}")


__all__ = [
    "BrokerUnavailable",
    "Channel",
    "Link",
    "LinkLost",
    "PerCpLink",
    "SharedLink",
    "build_link",
]
