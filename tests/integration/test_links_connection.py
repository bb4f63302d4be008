"""The `BrokerConnection` contract, on both implementations (aiomqtt, awscrt), against Mosquitto.

Every link policy (per-CP channel, shared link, probe, events watcher) relies on what is proven
here: events up and down (never down for `stop()`), acknowledged operations, MQTT 5 "no local",
retained messages, user properties, refusals as `BrokerRefused`, reconnecting (or not) after a
drop, and a broker that stops answering with its socket open ending the connection as `STALLED`
within about the timeout instead of at the keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import json
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.links.aiomqtt_connection import aiomqtt_connections
from gateway.links.broker import BrokerSettings, ConnectionFactory
from gateway.links.broker_url import AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE
from gateway.links.connection import (
    BrokerConnection,
    BrokerRefused,
    ConnectionOptions,
    Down,
    DownReason,
    LinkError,
    NotConnected,
    Subscription,
)
from gateway.links.crt_connection import crt_connections
from tests.support.mosquitto import MosquittoContainer, MosquittoProcess, start_broker
from tests.support.mqtt import mqtt_peer
from tests.support.waiting import until

pytestmark = pytest.mark.integration

IMPLS: dict[str, Callable[[BrokerSettings], ConnectionFactory]] = {
    "aiomqtt": aiomqtt_connections,
    "awscrt": crt_connections,
}
_numbers = itertools.count(1)


class Recorder:
    """`ConnectionEvents` that keeps everything it is told."""

    def __init__(self) -> None:
        self.ups = 0
        self.downs: list[Down] = []
        self.received: list[tuple[str, bytes]] = []
        self.is_up = asyncio.Event()

    def connection_up(self) -> None:
        self.ups += 1
        self.is_up.set()

    def connection_down(self, down: Down) -> None:
        self.downs.append(down)
        self.is_up.clear()

    def message(self, topic: str, payload: bytes) -> None:
        self.received.append((topic, payload))


def unique(prefix: str) -> str:
    """Topics and client ids of this test alone: the session broker is shared."""
    return f"contract/{prefix}-{next(_numbers)}-{time.time_ns():x}"


def open_connection(
    impl: str, url: str, *, timeout: float = 5.0, **options: object
) -> tuple[BrokerConnection, Recorder]:
    broker = BrokerSettings(gateway_id="contract", mqtt_url=url, mqtt_timeout=timeout)
    events = Recorder()
    client_id = unique(impl).replace("/", "-")
    connection = IMPLS[impl](broker)(ConnectionOptions(client_id, **options), events)  # type: ignore[arg-type]
    return connection, events


@pytest.fixture
async def running(
    request: pytest.FixtureRequest, broker: MosquittoProcess | MosquittoContainer
) -> AsyncIterator[tuple[BrokerConnection, Recorder]]:
    """A started connection on the session broker, stopped after the test."""
    connection, events = open_connection(request.param, broker.url)
    connection.start()
    await asyncio.wait_for(events.is_up.wait(), 10)
    yield connection, events
    await connection.stop()


async def until_received(events: Recorder, condition: Callable[[], bool]) -> None:
    await until(condition, timeout=5, what=f"messages (received only {events.received})")


# -- operations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("running", IMPLS, indirect=True)
async def test_up_subscribe_publish_unsubscribe_and_no_down_for_stop(
    running: tuple[BrokerConnection, Recorder], broker: MosquittoProcess | MosquittoContainer
) -> None:
    connection, events = running
    assert connection.up and events.ups == 1 and events.downs == []
    watched, marker = unique("watched"), unique("marker")
    await connection.subscribe([Subscription(watched), Subscription(marker)])
    async with mqtt_peer(broker.url) as peer:
        await peer.publish(watched, b"from the peer \x00\xff")
        await until_received(events, lambda: len(events.received) == 1)
        assert events.received == [(watched, b"from the peer \x00\xff")]

        await peer.subscribe(watched)
        await connection.publish(watched, b"from the connection")
        received = await peer.next()
        assert (received.topic, received.payload) == (watched, b"from the connection")

        await connection.unsubscribe([watched])
        await peer.publish(watched, b"after the unsubscribe")
        await peer.publish(marker, b"marker")  # in order: once it is here, the other was not
        await until_received(events, lambda: (marker, b"marker") in events.received)
        assert (watched, b"after the unsubscribe") not in events.received

    await connection.stop()
    assert not connection.up
    await asyncio.sleep(0.3)
    assert events.downs == []  # `stop()` is never reported as a drop
    with pytest.raises(NotConnected):
        await connection.publish(watched, b"stopped")


def nodelay_of_sockets_towards(port: int) -> list[int]:
    """TCP_NODELAY of each of this process's TCP sockets connected to `port`."""
    found = []
    for fd in glob.glob("/proc/self/fd/*"):
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=int(fd.rsplit("/", 1)[1]))
            try:
                if (
                    sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.type == socket.SOCK_STREAM
                    and sock.getpeername()[1] == port
                ):
                    found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            finally:
                sock.detach()
    return found


@pytest.mark.parametrize("impl", IMPLS)
async def test_every_connection_turns_nagle_off(
    impl: str, broker: MosquittoProcess | MosquittoContainer
) -> None:
    """A PUBLISH that follows a PUBACK must not wait for the broker's delayed ACK (40 ms).

    Connections of one factory coming up together are handled in one pass over the process's
    descriptors (the CRT's; paho sets the option itself).
    """
    connect = IMPLS[impl](BrokerSettings(gateway_id="contract", mqtt_url=broker.url))
    connections = []
    for _ in range(5):
        events = Recorder()
        client_id = unique(impl).replace("/", "-")
        connections.append((connect(ConnectionOptions(client_id), events), events))  # type: ignore[arg-type]
    port = int(broker.url.rsplit(":", 1)[1])
    try:
        for connection, _ in connections:
            connection.start()
        for _, events in connections:
            await asyncio.wait_for(events.is_up.wait(), 10)

        def nagle_off_everywhere() -> bool:
            flags = nodelay_of_sockets_towards(port)
            return len(flags) >= len(connections) and all(flags)

        await until(nagle_off_everywhere, what="TCP_NODELAY on every connection to the broker")
    finally:
        for connection, _ in connections:
            await connection.stop()


@pytest.mark.parametrize("impl", IMPLS)
async def test_operations_while_down_raise_not_connected(impl: str, unused_tcp_port: int) -> None:
    connection, events = open_connection(
        impl, f"mqtt://127.0.0.1:{unused_tcp_port}", timeout=1.0, reconnect=False
    )
    connection.start()
    try:
        await until(lambda: bool(events.downs), what="the failed connection to be reported")
        assert events.ups == 0 and not connection.up
        assert events.downs[0].reason is DownReason.DROPPED
        assert events.downs[0].detail.startswith("cannot connect")
        with pytest.raises(NotConnected):
            await connection.publish("t", b"x")
        with pytest.raises(NotConnected):
            await connection.subscribe([Subscription("t")])
        with pytest.raises(NotConnected):
            await connection.unsubscribe(["t"])
    finally:
        await connection.stop()


@pytest.mark.parametrize("running", IMPLS, indirect=True)
async def test_no_local_topics_do_not_bring_back_the_connections_own_messages(
    running: tuple[BrokerConnection, Recorder], broker: MosquittoProcess | MosquittoContainer
) -> None:
    connection, events = running
    claims, out = unique("claims/CP1"), unique("CP1/out")
    await connection.subscribe([Subscription(out), Subscription(claims, no_local=True)])
    await connection.publish(claims, b"own claim")
    await connection.publish(out, b"own out")
    async with mqtt_peer(broker.url) as other_gateway:
        await other_gateway.publish(claims, b"other claim")
    await until_received(events, lambda: len(events.received) >= 2)
    await asyncio.sleep(0.2)  # time for an unwanted echo to arrive
    assert set(events.received) == {(claims, b"other claim"), (out, b"own out")}


@pytest.mark.parametrize("running", IMPLS, indirect=True)
async def test_a_retained_publish_is_read_back_by_a_later_subscription(
    running: tuple[BrokerConnection, Recorder], broker: MosquittoProcess | MosquittoContainer
) -> None:
    connection, events = running
    kept, passing = unique("claims/retained"), unique("claims/not-retained")
    await connection.publish(kept, b'{"gateway": "g"}', retain=True)
    await connection.publish(passing, b"not kept")
    try:
        await connection.subscribe([Subscription(kept), Subscription(passing)])
        await until_received(events, lambda: (kept, b'{"gateway": "g"}') in events.received)
        async with mqtt_peer(broker.url, kept) as peer:  # another client reads it too
            received = await peer.next()
            assert (received.topic, received.payload) == (kept, b'{"gateway": "g"}')
        await asyncio.sleep(0.2)
        assert events.received == [(kept, b'{"gateway": "g"}')]
    finally:
        await connection.publish(kept, b"", retain=True)  # an empty retained message clears it


@pytest.mark.parametrize("running", IMPLS, indirect=True)
async def test_user_properties_arrive_with_the_message(
    running: tuple[BrokerConnection, Recorder], broker: MosquittoProcess | MosquittoContainer
) -> None:
    connection, _ = running
    topic = unique("CP1/in")
    async with mqtt_peer(broker.url, topic) as csms:
        await connection.publish(topic, b"[2]", properties=(("subprotocol", "ocpp2.0.1"),))
        await connection.publish(topic, b"[3]", properties=(("a", "1"), ("b", "Ω")))
        await connection.publish(topic, b"[4]")
        first, second, third = [await csms.next() for _ in range(3)]
    assert (first.payload, first.user_properties) == (b"[2]", {"subprotocol": "ocpp2.0.1"})
    assert (second.payload, second.user_properties) == (b"[3]", {"a": "1", "b": "Ω"})
    assert (third.payload, third.user_properties) == (b"[4]", {})


# Mosquitto's `acl_file` grants every subscription (it only filters deliveries); its dynamic
# security plugin refuses one with "Not authorized" (0x87), as AWS IoT Core does.
DYNAMIC_SECURITY = {
    "defaultACLAccess": {
        "publishClientSend": True,
        "publishClientReceive": True,
        "subscribe": False,
        "unsubscribe": True,
    },
    "clients": [],
    "groups": [{"groupname": "anonymous", "roles": [{"rolename": "allowed"}]}],
    "roles": [
        {
            "rolename": "allowed",
            "acls": [{"acltype": "subscribePattern", "topic": "allowed/#", "allow": True}],
        }
    ],
    "anonymousGroup": "anonymous",
}


@pytest.fixture
def acl_broker() -> Iterator[MosquittoProcess]:
    """A Mosquitto that lets anonymous clients subscribe to `allowed/#` only."""
    candidates = glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob(
        "/usr/lib/mosquitto*/mosquitto_dynamic_security.so"
    )
    plugin = min(candidates, default=None)
    if plugin is None:
        pytest.skip("Mosquitto's dynamic security plugin is not installed")
    # Readable (and writable: the plugin saves it) by user `mosquitto`, which a broker started
    # as root runs as.
    directory = Path(tempfile.mkdtemp(prefix="mosquitto-dynsec-"))
    directory.chmod(0o755)
    config = directory / "dynamic-security.json"
    config.write_text(json.dumps(DYNAMIC_SECURITY))
    config.chmod(0o666)
    process = start_broker(extra_config=[f"plugin {plugin}", f"plugin_opt_config_file {config}"])
    yield process
    process.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_refused_subscription_raises_broker_refused(
    impl: str, acl_broker: MosquittoProcess
) -> None:
    connection, events = open_connection(impl, acl_broker.url)
    connection.start()
    try:
        await asyncio.wait_for(events.is_up.wait(), 10)
        with pytest.raises(BrokerRefused) as refused:
            await connection.subscribe([Subscription("allowed/a"), Subscription("secret/b")])
        assert "secret/b" in str(refused.value)
        assert "allowed/a" not in str(refused.value)
        # A refusal is the broker's answer, not a failure of the connection.
        assert connection.up and events.downs == []
        await connection.subscribe([Subscription("allowed/a")])
        await connection.publish("allowed/a", b"still working")
        await until_received(events, lambda: ("allowed/a", b"still working") in events.received)
    finally:
        await connection.stop()


@pytest.mark.parametrize("impl", IMPLS)
def test_aws_iot_core_gets_at_most_8_topics_per_subscribe(impl: str) -> None:
    async def limits() -> tuple[int, int]:
        aws, _ = open_connection(impl, "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883")
        local, _ = open_connection(impl, "mqtt://127.0.0.1:1")
        return aws.max_topics_per_packet, local.max_topics_per_packet

    aws, local = asyncio.run(limits())
    assert aws == AWS_IOT_CORE_TOPICS_PER_SUBSCRIBE == 8
    assert local > 8


# -- drops, reconnecting, stalls ----------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
async def test_reconnect_on_comes_back_by_itself_after_a_broker_restart(
    impl: str, private_broker: MosquittoProcess
) -> None:
    connection, events = open_connection(
        impl, private_broker.url, timeout=2.0, min_delay=0.1, max_delay=0.5
    )
    connection.start()
    try:
        await asyncio.wait_for(events.is_up.wait(), 10)
        await asyncio.to_thread(private_broker.stop)
        await until(lambda: bool(events.downs), what="the drop to be reported")
        assert not connection.up
        assert events.downs[0].reason is DownReason.DROPPED
        await asyncio.to_thread(private_broker.start)
        await until(lambda: events.ups == 2, timeout=15, what="the connection to come back")
        assert connection.up
        assert all(down.reason is DownReason.DROPPED for down in events.downs)
        # Usable again (Mosquitto without persistence forgot the session: subscribe anew).
        await connection.subscribe([Subscription("after/restart")])
        await connection.publish("after/restart", b"back")
        await until_received(events, lambda: ("after/restart", b"back") in events.received)
    finally:
        await connection.stop()


@pytest.mark.parametrize("impl", IMPLS)
async def test_reconnect_off_stays_down_until_started_again(
    impl: str, private_broker: MosquittoProcess
) -> None:
    connection, events = open_connection(
        impl, private_broker.url, timeout=2.0, reconnect=False, min_delay=0.1, max_delay=0.2
    )
    connection.start()
    try:
        await asyncio.wait_for(events.is_up.wait(), 10)
        await asyncio.to_thread(private_broker.restart)
        await until(lambda: bool(events.downs), what="the drop to be reported")
        assert events.downs[0].reason is DownReason.DROPPED
        await asyncio.sleep(2.0)  # many back-off periods: it must not have come back by itself
        assert (events.ups, len(events.downs), connection.up) == (1, 1, False)
        with pytest.raises(NotConnected):
            await connection.publish("t", b"x")
        connection.start()
        await until(lambda: events.ups == 2, what="the connection after start()")
        assert connection.up
        await connection.publish("t", b"x")
    finally:
        await connection.stop()


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_frozen_broker_ends_the_connection_as_stalled_within_the_timeout(
    impl: str, private_broker: MosquittoProcess
) -> None:
    timeout = 1.0
    connection, events = open_connection(
        impl, private_broker.url, timeout=timeout, min_delay=0.1, max_delay=0.5
    )
    connection.start()
    process = private_broker.process
    assert process is not None
    try:
        await asyncio.wait_for(events.is_up.wait(), 10)
        process.send_signal(signal.SIGSTOP)  # the socket stays open; nothing is answered
        try:
            started = time.monotonic()
            with pytest.raises(LinkError):
                await asyncio.wait_for(connection.publish("frozen/t", b"x"), 4 * timeout)
            elapsed = time.monotonic() - started
            assert timeout * 0.8 <= elapsed < timeout + 1.0, elapsed
            await until(lambda: bool(events.downs), timeout=2, what="the stall to be reported")
            assert events.downs[0].reason is DownReason.STALLED, events.downs
            assert not connection.up
        finally:
            process.send_signal(signal.SIGCONT)
        # With reconnect on, it comes back once the broker answers again.
        await until(lambda: events.ups >= 2, timeout=15, what="the connection to come back")
        await connection.publish("frozen/t", b"after")
    finally:
        await connection.stop()
