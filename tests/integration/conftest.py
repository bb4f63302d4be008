from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.server import Gateway
from tests.support.gateway import running_gateway
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer, mqtt_peer


@pytest.fixture
async def gateway(broker: MosquittoProcess) -> AsyncIterator[Gateway]:
    async with running_gateway(broker.url) as running:
        yield running


@pytest.fixture
async def csms(broker: MosquittoProcess) -> AsyncIterator[MqttPeer]:
    """The test stands where the CSMS would: it sees every `/in` frame and can publish `/out`."""
    async with mqtt_peer(broker.url, "+/in") as peer:
        yield peer
