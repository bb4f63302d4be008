"""The same behaviour from every broker link: aiomqtt and awscrt, plain, mutual TLS and SigV4.

A real Mosquitto serves three listeners: plain MQTT (where the test's CSMS peer listens), mutual
TLS with a throwaway CA, and MQTT over secure WebSockets for the SigV4-signed handshake (the
broker does not check the signature; `test_links_sigv4.py` does).
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import ssl
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from awscrt import io as awscrt_io
from awscrt.exceptions import AwsCrtError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.links import LinkLost, build_link, tls
from gateway.links.claims import Claim
from gateway.links.connection import SESSION_TAKEN_OVER, Down, DownReason
from gateway.links.crt_connection import CrtConnection
from gateway.links.per_cp import PerCpChannel
from gateway.observability import Metrics
from gateway.settings import Settings
from tests.support.gateway import REPO_ROOT, GatewayProcess, running_gateway, ws_url
from tests.support.mqtt import MqttPeer, mqtt_peer
from tests.support.tls import (
    BROKER_HOST,
    STATIC_AWS_CREDENTIALS,
    LinkUnderTest,
    Pki,
    TlsBroker,
    link_setup,
    make_pki,
)
from tests.support.waiting import until

pytestmark = pytest.mark.integration

LINKS = ["aiomqtt-plain", "aiomqtt-mtls", "awscrt-plain", "awscrt-mtls", "awscrt-sigv4"]
BOOT = '[2,"boot-1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"Ω-1"}}]'


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    # Not under pytest's tmp_path: its parents are private to root, and the broker is not root.
    made = make_pki()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    broker = TlsBroker(pki).start()
    yield broker
    broker.stop()


@pytest.fixture
def private_tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    broker = TlsBroker(pki).start()
    yield broker
    broker.stop()


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static credentials for the default chain (SigV4), and nothing else from the machine."""
    for name, value in STATIC_AWS_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("GATEWAY_LINK_IMPL", "GATEWAY_LINK_MODE", "GATEWAY_MQTT_AUTH", "IOT_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=LINKS)
def link(request: pytest.FixtureRequest, tls_broker: TlsBroker) -> LinkUnderTest:
    return link_setup(str(request.param), tls_broker)


@pytest.fixture
async def csms(tls_broker: TlsBroker) -> AsyncIterator[MqttPeer]:
    async with mqtt_peer(tls_broker.plain_url, "+/in") as peer:
        yield peer


async def open_cp(url: str) -> ClientConnection:
    return await connect(url, subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]


async def closed_with(ws: ClientConnection, timeout: float = 10) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code, ws.close_reason


async def round_trip(ws: ClientConnection, csms: MqttPeer, cp_id: str, tag: str) -> None:
    """A CALL reaches `<cp>/in` and the answer on `<cp>/out` reaches this very connection."""
    call = f'[2,"{tag}","Heartbeat",{{}}]'
    await ws.send(call)
    while (received := await csms.next(timeout=10)).payload != call.encode():
        pass
    assert received.topic == f"{cp_id}/in"
    await csms.publish(f"{cp_id}/out", f'[3,"{tag}",{{}}]')
    assert await asyncio.wait_for(ws.recv(), 10) == f'[3,"{tag}",{{}}]'


# -- the suite --------------------------------------------------------------------------------


async def test_frames_cross_byte_exact_both_ways(link: LinkUnderTest, csms: MqttPeer) -> None:
    frames = [BOOT, '[2, "2", "DataTransfer", {"vendorId": "Grüße ⚡ 充電 🚗", "data": "  x  "}]']
    answer = '[3,"boot-1",{"currentTime":"2026-01-01T00:00:00Z","interval":10,"note":"ü 🚗"}]'
    async with (
        running_gateway(link.url, **link.settings) as gateway,
        connect(ws_url(gateway), subprotocols=["ocpp2.0.1"]) as ws,  # type: ignore[list-item]
    ):
        for frame in frames:
            await ws.send(frame)
        for frame in frames:
            received = await csms.next()
            assert (received.topic, received.payload) == ("CP1/in", frame.encode())
            assert received.user_properties == {"subprotocol": "ocpp2.0.1"}
        await csms.publish("CP1/out", answer.encode())
        assert await asyncio.wait_for(ws.recv(), 5) == answer


async def test_unknown_id_is_closed_with_1008(link: LinkUnderTest) -> None:
    async with running_gateway(link.url, **link.settings) as gateway:
        ws = await open_cp(ws_url(gateway, "CPX"))
        assert await closed_with(ws) == (1008, "Charge Point CPX not registered as an IoT Thing")


async def test_takeover_across_two_gateways_without_flapping(
    link: LinkUnderTest, csms: MqttPeer
) -> None:
    first, second = GatewayProcess(link.url, **link.env), GatewayProcess(link.url, **link.env)
    try:
        await asyncio.gather(asyncio.to_thread(first.start), asyncio.to_thread(second.start))
        on_first = await open_cp(first.url("CP1"))
        await round_trip(on_first, csms, "CP1", "first")
        on_second = await open_cp(second.url("CP1"))
        assert await closed_with(on_first) == (1000, "")
        # The CP stays on the second gateway: no reconnect war between the replicas.
        for n in range(4):
            await round_trip(on_second, csms, "CP1", f"second-{n}")
            await asyncio.sleep(0.3)
        assert on_second.close_code is None
        await on_second.close()
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("name", LINKS)
async def test_broker_restart_within_grace_keeps_the_session(
    name: str, private_tls_broker: TlsBroker
) -> None:
    link = link_setup(name, private_tls_broker)
    broker = private_tls_broker.process
    assert broker is not None
    async with running_gateway(link.url, broker_grace=10.0, **link.settings) as gateway:
        ws = await open_cp(ws_url(gateway))
        async with mqtt_peer(broker.url, "+/in") as csms:
            await round_trip(ws, csms, "CP1", "before")
        await asyncio.to_thread(broker.restart)
        # Sent while the broker restarts: held, then delivered after the reconnect.
        await ws.send('[2,"during","Heartbeat",{}]')
        async with mqtt_peer(broker.url, "+/in") as csms:
            await round_trip(ws, csms, "CP1", "after")
        assert ws.close_code is None
        await ws.close()
        assert "ocpp_gateway_link_reconnects_total 1.0" in gateway.metrics.render().decode()


# -- TLS refusals -------------------------------------------------------------------------------


TLS_LINKS = [name for name in LINKS if not name.endswith("plain")]


def start_unready(process: GatewayProcess, timeout: float = 30) -> None:
    """Start the gateway subprocess and wait until it answers /health, ready or not."""
    process.process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        env=process.env,
        cwd=REPO_ROOT,
        stdout=process.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while process.health()[0] == 0:
        assert process.process.poll() is None, f"the gateway exited:\n{process.log()}"
        assert time.monotonic() < deadline, f"no /health answer in {timeout}s:\n{process.log()}"
        time.sleep(0.1)


def log_events(process: GatewayProcess, event: str) -> list[dict[str, Any]]:
    lines = [line for line in process.log().splitlines() if line.startswith("{")]
    return [entry for entry in map(json.loads, lines) if entry.get("event") == event]


@pytest.mark.parametrize("name", TLS_LINKS)
async def test_wrong_ca_is_refused_with_a_clear_log_line(name: str, tls_broker: TlsBroker) -> None:
    link = link_setup(name, tls_broker, ca=tls_broker.pki.wrong_ca)
    process = GatewayProcess(link.url, GATEWAY_MQTT_TIMEOUT="1", **link.env)
    try:
        await asyncio.to_thread(start_unready, process)
        status, health = process.health()
        assert (status, health["broker"]) == (503, "unreachable")
        failures = log_events(process, "broker.tls_failed")
        assert failures, process.log()
        assert failures[0]["error"].startswith("certificate verify failed"), failures[0]
        assert (failures[0]["host"], failures[0]["port"]) == (BROKER_HOST, link_port(link))
        with pytest.raises(Exception, match="HTTP 503"):
            await open_cp(process.url("CP1"))
    finally:
        process.stop()


@pytest.mark.parametrize("name", ["aiomqtt-mtls", "awscrt-mtls"])
async def test_certificate_from_another_ca_is_refused_by_the_broker(
    name: str, tls_broker: TlsBroker
) -> None:
    link = link_setup(name, tls_broker)
    stranger = tls_broker.pki.stranger
    process = GatewayProcess(
        link.url,
        GATEWAY_MQTT_TIMEOUT="1",
        **{
            **link.env,
            "GATEWAY_MQTT_CERT_FILE": str(stranger.cert),
            "GATEWAY_MQTT_KEY_FILE": str(stranger.key),
        },
    )
    try:
        await asyncio.to_thread(start_unready, process)
        assert process.health()[0] == 503
        failures = log_events(process, "broker.tls_failed")
        assert failures, process.log()
        assert "unknown ca" in failures[0]["error"], failures[0]
    finally:
        process.stop()


def link_port(link: LinkUnderTest) -> int:
    return int(link.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("name", ["aiomqtt-mtls", "awscrt-mtls"])
async def test_pem_text_from_the_environment(
    name: str, tls_broker: TlsBroker, csms: MqttPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ECS injects secrets: PEM text in variables, the key pasted on one line with `\\n`."""
    pki = tls_broker.pki
    link = link_setup(name, tls_broker)
    monkeypatch.setenv("GATEWAY_MQTT_CA_PEM", pki.ca.read_text())
    monkeypatch.setenv("GATEWAY_MQTT_CERT_PEM", pki.client.cert_pem())
    monkeypatch.setenv("GATEWAY_MQTT_KEY_PEM", pki.client.key_pem().replace("\n", "\\n"))
    settings = {key: value for key, value in link.settings.items() if not key.endswith("_file")}
    async with running_gateway(link.url, **settings) as gateway:
        ws = await open_cp(ws_url(gateway))
        await round_trip(ws, csms, "CP1", "pem")
        await ws.close()


# -- awscrt specifics ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["aiomqtt", "awscrt"])
async def test_a_newer_claim_gives_the_cp_up_for_good(tls_broker: TlsBroker, impl: str) -> None:
    """Another replica's newer claim ends the channel at once; it never reconnects."""
    settings = Settings(_env_file=None, mqtt_url=tls_broker.plain_url, link_impl=impl)
    link = build_link(settings, Metrics(), "gw-test")
    await link.start()
    lost: list[LinkLost] = []
    ended = asyncio.Event()

    def on_lost(reason: LinkLost) -> None:
        lost.append(reason)
        ended.set()

    async def deliver(payload: bytes) -> None:
        pass

    channel = await link.open_channel("CP1", "ocpp2.0.1", deliver, on_lost, since=1000.0)
    try:
        async with mqtt_peer(tls_broker.plain_url) as other_replica:
            newer = Claim(2000.0, "gw-other", "1")
            await other_replica.publish("ocpp-gateway/claims/CP1", newer.encode())
            await asyncio.wait_for(ended.wait(), 10)
        assert lost == [LinkLost.TAKEN_OVER]
    finally:
        await channel.close()
        await link.close()


async def taken_over_by_the_crt(
    tls_broker: TlsBroker, cp_id: str, retained_claim: Callable[[Claim], Claim]
) -> tuple[list[LinkLost], list[Down], bool]:
    """What the channel lost, what its connection reported, and whether it is up again."""
    # AWS IoT Core says "session taken over" (0x8E); Mosquitto 2.0 cannot, so the CRT's report
    # is played here, after the claim topic was given `retained_claim(the channel's claim)`.
    settings = Settings(_env_file=None, mqtt_url=tls_broker.plain_url, link_impl="awscrt")
    link = build_link(settings, Metrics(), "gw-test")
    await link.start()
    lost: list[LinkLost] = []

    async def deliver(payload: bytes) -> None:
        pass

    opened = await link.open_channel(cp_id, "ocpp2.0.1", deliver, lost.append)
    assert isinstance(opened, PerCpChannel)
    channel: PerCpChannel = opened
    connection = channel.connection
    assert isinstance(connection, CrtConnection)
    downs: list[Down] = []

    class Spy:
        """Sees what the connection reports to the channel."""

        def connection_up(self) -> None:
            channel.connection_up()

        def connection_down(self, down: Down) -> None:
            downs.append(down)
            channel.connection_down(down)

        def message(self, topic: str, payload: bytes) -> None:
            channel.message(topic, payload)

    connection._events = Spy()
    callbacks = connection._current
    assert callbacks is not None and callbacks.client is not None
    # What the CRT thread does before reporting the drop of a client that must not reconnect.
    callbacks.client.stop()
    await asyncio.wait_for(callbacks.stopped.wait(), 5)
    claim_topic = f"ocpp-gateway/claims/{cp_id}"
    async with mqtt_peer(tls_broker.plain_url) as peer:
        claim = retained_claim(channel.claim).encode()
        await peer.client.publish(claim_topic, claim, qos=1, retain=True)
    try:
        error = AwsCrtError(0, "AWS_ERROR_MQTT5_DISCONNECT_RECEIVED", "the server sent DISCONNECT")
        connection.dropped(callbacks, SESSION_TAKEN_OVER, error, False)
        assert downs == [Down(DownReason.TAKEN_OVER, "session taken over")]
        # The channel asks the probe for the retained claim: the link must still be running.
        await until(lambda: bool(lost) or connection.up, timeout=10, what="the channel's choice")
        await asyncio.sleep(0.5)  # time for a wrong second decision
        up_again = connection.up and connection._current is not callbacks
    finally:
        await channel.close()
        await link.close()
        async with mqtt_peer(tls_broker.plain_url) as peer:
            await peer.client.publish(claim_topic, b"", qos=1, retain=True)
    return lost, downs, up_again


async def test_awscrt_session_taken_over_by_a_newer_claim_gives_the_cp_up_for_good(
    tls_broker: TlsBroker,
) -> None:
    newer = lambda own: Claim(own.at + 1, "gw-other", "other.1")  # noqa: E731
    lost, downs, up_again = await taken_over_by_the_crt(tls_broker, "CP-TAKEN1", newer)
    assert lost == [LinkLost.TAKEN_OVER]
    assert (len(downs), up_again) == (1, False)  # no new client: no reconnect war


async def test_awscrt_session_taken_over_by_an_older_rival_keeps_the_cp(
    tls_broker: TlsBroker,
) -> None:
    """Its own claim is still the newest: an older connection came back; this one reconnects
    (which drops the rival, which then finds the newer claim and gives up)."""
    lost, downs, up_again = await taken_over_by_the_crt(tls_broker, "CP-TAKEN2", lambda own: own)
    assert lost == []
    assert (len(downs), up_again) == (1, True)


async def test_closed_channels_are_freed(link: LinkUnderTest) -> None:
    """The CRT keeps its callbacks until its client is gone: nothing may tie them in a loop."""
    settings = Settings(_env_file=None, mqtt_url=link.url, **link.settings)
    gateway_link = build_link(settings, Metrics(), "gw-test")
    await gateway_link.start()

    async def deliver(payload: bytes) -> None:
        pass

    freed = []
    for n in range(20):
        channel = await gateway_link.open_channel(f"FREE{n}", "ocpp2.0.1", deliver, print)
        await channel.publish(b'[2,"1","Heartbeat",{}]')
        await channel.close()
        freed.append(weakref.ref(channel))
        del channel
    await gateway_link.close()
    for _ in range(50):
        gc.collect()
        if all(ref() is None for ref in freed):
            break
        await asyncio.sleep(0.05)  # the CRT releases a stopped client on its own thread
    assert [ref() for ref in freed] == [None] * 20


@pytest.mark.parametrize("name", TLS_LINKS)
async def test_one_tls_context_per_link(
    name: str, tls_broker: TlsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of per-CP clients share the link's TLS context: building one costs ms of CPU."""
    built: list[object] = []
    python_context, crt_context = tls.ssl_context, awscrt_io.ClientTlsContext

    def count_python(material: tls.TlsMaterial) -> ssl.SSLContext:
        built.append(material)
        return python_context(material)

    class CountedCrtContext(crt_context):  # type: ignore[misc, valid-type]
        def __init__(self, options: object) -> None:
            built.append(options)
            super().__init__(options)

    monkeypatch.setattr(tls, "ssl_context", count_python)
    monkeypatch.setattr(awscrt_io, "ClientTlsContext", CountedCrtContext)
    link = link_setup(name, tls_broker)
    settings = Settings(_env_file=None, mqtt_url=link.url, **link.settings)
    gateway_link = build_link(settings, Metrics(), "gw-test")
    await gateway_link.start()

    async def deliver(payload: bytes) -> None:
        pass

    channels = [
        await gateway_link.open_channel(f"CTX{n}", "ocpp2.0.1", deliver, print) for n in range(5)
    ]
    for channel in channels:
        await channel.close()
    await gateway_link.close()
    assert len(built) == 1
