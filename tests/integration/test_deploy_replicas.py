"""The `replicas` compose profile's load balancer for real: HAProxy with docker/haproxy.cfg
(service names replaced by loopback ports) in front of two gateway processes sharing a broker.
A charge point keeps one connection across replicas, and survives a replica's restart."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from scripts.deploy_tools import REPO_ROOT, find_tool
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import MosquittoProcess
from tests.support.ports import free_port, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OCPP = [websockets.Subprotocol("ocpp2.0.1")]


@dataclass
class Replicas:
    url: str
    gateways: list[GatewayProcess]


def haproxy_config(listen_port: int, replica_ports: list[int]) -> str:
    """docker/haproxy.cfg with the compose service names and bind port moved to loopback, and
    maxconn lowered to what a process may open here (HAProxy needs two files per connection)."""
    config = (REPO_ROOT / "docker" / "haproxy.cfg").read_text()
    assert "    maxconn 20000\n" in config
    config = config.replace("    maxconn 20000\n", "    maxconn 1000\n")
    config = config.replace("bind :8081", f"bind 127.0.0.1:{listen_port}")
    for number, port in enumerate(replica_ports, start=1):
        name = f"gateway-replica-{number}:8080"
        assert name in config, f"{name} not in docker/haproxy.cfg"
        config = config.replace(name, f"127.0.0.1:{port}")
    return config


@pytest.fixture
def replicas(broker: MosquittoProcess, tmp_path: Path) -> Iterator[Replicas]:
    gateways = [
        GatewayProcess(broker.url, GATEWAY_GATEWAY_ID=f"gateway-replica-{n}") for n in (1, 2)
    ]
    listen_port = free_port()
    config = tmp_path / "haproxy.cfg"
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        # Replicas first: a replica HAProxy finds down stays out for two health checks (10 s).
        # A replica may move to another port if its own was taken meanwhile: config after.
        for gateway in gateways:
            gateway.start()
        config.write_text(haproxy_config(listen_port, [g.port for g in gateways]))
        log = (tmp_path / "haproxy.log").open("ab")
        haproxy = subprocess.Popen(
            [str(find_tool("haproxy")), "-db", "-f", str(config)], stdout=log, stderr=log
        )
        wait_for_port("127.0.0.1", listen_port, timeout=10)
        yield Replicas(f"ws://127.0.0.1:{listen_port}", gateways)
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(timeout=10)
        for gateway in gateways:
            gateway.stop()


async def connect(url: str) -> ClientConnection:
    """Connect through the load balancer, retrying while it still checks the replicas."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await websockets.connect(url, subprotocols=OCPP, open_timeout=5)
        except (OSError, InvalidHandshake, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def first(replicas: Replicas) -> AsyncIterator[ClientConnection]:
    ws = await connect(f"{replicas.url}/CP1")
    yield ws
    await ws.close()


async def connected_on(gateways: list[GatewayProcess], count: int = 1) -> list[GatewayProcess]:
    """The gateways that logged `count` or more charge point connections (waits for the log)."""
    deadline = time.monotonic() + 10
    while True:
        holding = [g for g in gateways if g.log().count('"cp.connected"') >= count]
        if holding or time.monotonic() > deadline:
            return holding
        await asyncio.sleep(0.05)


async def test_second_connection_on_the_other_replica_closes_the_first_with_1000(
    replicas: Replicas, first: ClientConnection
) -> None:
    # The first connection is bridged (its MQTT session exists) before the second one comes.
    assert len(await connected_on(replicas.gateways)) == 1
    second = await connect(f"{replicas.url}/CP1")
    try:
        with pytest.raises(ConnectionClosed) as closed:
            try:
                await asyncio.wait_for(first.recv(), 15)
            except TimeoutError:
                logs = "\n".join(g.log() for g in replicas.gateways)
                pytest.fail(f"the first connection stayed open:\n{logs}")
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
        # leastconn sent the two connections to different replicas.
        for gateway in replicas.gateways:
            assert await connected_on([gateway]) == [gateway], gateway.log()
        await asyncio.wait_for(await second.ping(), 5)
    finally:
        await second.close()


async def test_restarting_replica_sends_its_charge_point_to_the_other_one(
    replicas: Replicas, first: ClientConnection
) -> None:
    (stopping,) = await connected_on(replicas.gateways)
    (survivor,) = [g for g in replicas.gateways if g is not stopping]
    exit_code = await asyncio.get_running_loop().run_in_executor(None, stopping.terminate)
    assert exit_code == 0, stopping.log()
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(first.recv(), 15)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    again = await connect(f"{replicas.url}/CP1")
    try:
        await asyncio.wait_for(await again.ping(), 5)
        assert await connected_on([survivor]) == [survivor], survivor.log()
    finally:
        await again.close()
