"""Broker URLs: `mqtt://host[:port]` or `mqtts://host[:port]`, optionally with `user:password@`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_IOT_REGION = re.compile(r"\.iot\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_broker_url(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"unsupported broker URL {url!r}: use mqtt://host:port or mqtts://host:port"
        )
    if not parts.hostname:
        raise ValueError(f"the broker URL {url!r} has no host name")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ValueError(f"the broker URL {url!r} has an invalid port") from exc
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def region_of_iot_endpoint(host: str) -> str | None:
    """`abc-ats.iot.eu-west-1.amazonaws.com` -> `eu-west-1`; None for other hosts."""
    match = _IOT_REGION.search(host)
    return match.group(1) if match else None


# Topic filters per SUBSCRIBE packet: AWS IoT Core accepts at most 8 (a hard limit).
AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE = 8
TOPICS_PER_SUBSCRIBE = 500


def topics_per_subscribe(broker_host: str) -> int:
    if region_of_iot_endpoint(broker_host) is not None:
        return AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE
    return TOPICS_PER_SUBSCRIBE


# Subscriptions per connection: AWS IoT Core allows 50 by default (an adjustable quota).
AWS_IOT_CORE_SUBSCRIPTIONS_PER_CONNECTION = 50


def subscriptions_per_connection(broker_host: str) -> int:
    """The broker's default cap on one connection's subscriptions; 0: none (Mosquitto)."""
    if region_of_iot_endpoint(broker_host) is not None:
        return AWS_IOT_CORE_SUBSCRIPTIONS_PER_CONNECTION
    return 0
