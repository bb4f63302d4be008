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
    from gateway.links.shared_aiomqtt import AiomqttTransport

    return SharedLink(settings, metrics, gateway_id, AiomqttTransport)


def _build_crt_link(settings: Settings, metrics: Metrics, gateway_id: str) -> Link:
    try:  # the `aws` extra: awsiotsdk and awscrt
        from gateway.links.crt_link import CrtLink
        from gateway.links.shared_crt import CrtTransport
    except ImportError as exc:
        raise LinkMisconfigured(
            f"GATEWAY_LINK_IMPL=awscrt needs the AWS IoT Device SDK ({exc.name} is missing): "
            "pip install 'ocpp-mqtt-gateway[aws]'"
        ) from None
    if settings.link_mode is LinkMode.PER_CP:
        return CrtLink(settings, metrics, gateway_id)
    return SharedLink(settings, metrics, gateway_id, CrtTransport)


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
