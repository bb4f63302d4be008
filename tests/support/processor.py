"""Run the processor for tests, and talk to it the way the gateway does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gateway.links.aiomqtt_connection import publish_properties
from processor.service import Processor
from processor.settings import Settings

from .mqtt import MqttPeer


def processor_settings(broker_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mqtt_url": broker_url,
        "mqtt_timeout": 3.0,
        "reconnect_max_delay": 0.5,
        "shutdown_timeout": 2.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_processor(broker_url: str, **overrides: Any) -> AsyncIterator[Processor]:
    """A processor serving in the background, subscribed before the block starts."""
    processor = Processor(processor_settings(broker_url, **overrides))
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    try:
        await asyncio.wait_for(processor.ready.wait(), 10)
        yield processor
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def send_frame(
    peer: MqttPeer, cp_id: str, frame: str | bytes, subprotocol: str | None = "ocpp2.0.1"
) -> None:
    """Publish a CP frame to `<cpId>/in` as the gateway does (QoS 1, subprotocol property)."""
    properties = publish_properties((("subprotocol", subprotocol),)) if subprotocol else None
    await peer.client.publish(f"{cp_id}/in", frame, qos=1, properties=properties)
