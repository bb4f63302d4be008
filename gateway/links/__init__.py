"""Links between the gateway and the message broker."""

from gateway.links.base import BrokerUnavailable, Channel, Link, LinkLost
from gateway.links.errors import LinkMisconfigured
from gateway.links.per_cp import PerCpLink
from gateway.links.shared import SharedLink
from gateway.observability import Metrics
from gateway.settings import LinkImpl, LinkMode, Settings


def build_link(settings: Settings, metrics: Metrics, gateway_id: str) -> Link:
    """The link the settings ask for; raises `LinkMisconfigured` with what to fix."""
    if settings.link_impl is LinkImpl.AWSCRT:
        return _build_crt_link(settings, metrics, gateway_id)
    if settings.link_mode is LinkMode.PER_CP:
        return PerCpLink(settings, metrics, gateway_id)
    if settings.link_mode is LinkMode.SHARED:
        return SharedLink(settings, metrics, gateway_id)
    raise ValueError(f"unknown link mode {settings.link_mode!r}")


def _build_crt_link(settings: Settings, metrics: Metrics, gateway_id: str) -> Link:
    if settings.link_mode is not LinkMode.PER_CP:
        raise LinkMisconfigured(
            "GATEWAY_LINK_IMPL=awscrt runs one client per charge point: "
            "set GATEWAY_LINK_MODE=per-cp or GATEWAY_LINK_IMPL=aiomqtt"
        )
    try:
        from gateway.links.crt_link import CrtLink  # the `aws` extra: awsiotsdk and awscrt
    except ImportError as exc:
        raise LinkMisconfigured(
            f"GATEWAY_LINK_IMPL=awscrt needs the AWS IoT Device SDK ({exc.name} is missing): "
            "pip install 'ocpp-mqtt-gateway[aws]'"
        ) from None
    return CrtLink(settings, metrics, gateway_id)


__all__ = [
    "BrokerUnavailable",
    "Channel",
    "Link",
    "LinkLost",
    "LinkMisconfigured",
    "PerCpLink",
    "SharedLink",
    "build_link",
]
