"""SigV4-signed WebSocket handshakes, as far as they can be checked without AWS.

A local secure WebSocket listener records the upgrade request the awscrt link sends and refuses
it with 403, as AWS IoT Core does with a bad signature. The recorded request must carry a
well-formed presigned query whose signature verifies (with an independent SigV4 implementation)
against the request as it arrived, and must match what the AWS IoT Device SDK's own builder,
`websockets_with_default_aws_signing`, sends. Whether AWS accepts the credentials and the IoT
policy allows the client cannot be checked offline (see docs/aws.md).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
from awscrt import auth
from awsiot import mqtt5_client_builder
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from gateway.links.broker import BrokerSettings
from gateway.links.connection import ConnectionOptions, Down, DownReason
from gateway.links.crt_connection import CrtConnection, CrtFactory
from gateway.settings import Settings
from tests.support.sigv4 import expected_signature, parse_presigned
from tests.support.tls import BROKER_HOST, Pki, make_pki

pytestmark = pytest.mark.integration

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE/token+with=chars"
REGION = "eu-central-1"


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]


class RecordingListener:
    """A secure WebSocket endpoint that records each upgrade request and answers 403."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[Recorded] = asyncio.Queue()
        self.port = 0

    def record(self, connection: ServerConnection, request: Request) -> Response:
        self.requests.put_nowait(Recorded(request.path, dict(request.headers.raw_items())))
        return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")

    async def next(self) -> Recorded:
        return await asyncio.wait_for(self.requests.get(), 10)


class FailureEvents:
    """Connection events of a connection that is expected to be refused."""

    def __init__(self) -> None:
        self.failures: asyncio.Queue[Down] = asyncio.Queue()

    def connection_up(self) -> None:
        raise AssertionError("the recording listener never accepts a connection")

    def connection_down(self, down: Down) -> None:
        self.failures.put_nowait(down)

    def message(self, topic: str, payload: bytes) -> None:
        pass


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    made = make_pki()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _static_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default chain finds these first, as it finds the ECS task role's in AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.delenv("AWS_REGION", raising=False)


@pytest.fixture
async def listener(pki: Pki) -> AsyncIterator[RecordingListener]:
    recording = RecordingListener()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.broker.cert, pki.broker.key)
    async with serve(
        lambda connection: connection.wait_closed(),
        "127.0.0.1",
        0,
        ssl=context,
        process_request=recording.record,
    ) as server:
        recording.port = server.sockets[0].getsockname()[1]
        yield recording


def sigv4_settings(pki: Pki, port: int, **values: Any) -> Settings:
    return Settings(
        _env_file=None,
        mqtt_url=f"mqtts://{BROKER_HOST}:{port}",
        link_impl="awscrt",
        mqtt_auth="sigv4",
        mqtt_ca_file=pki.ca,
        aws_region=REGION,
        **values,
    )


async def handshake_of_the_link(pki: Pki, listener: RecordingListener) -> tuple[Recorded, str]:
    """The upgrade request of a per-CP connection (client id CP1, no reconnecting)."""
    factory = CrtFactory(BrokerSettings.from_settings(sigv4_settings(pki, listener.port), "gw"))
    events = FailureEvents()
    connection = CrtConnection(factory, ConnectionOptions("CP1", reconnect=False), events)
    connection.start()
    try:
        recorded = await listener.next()
        failure = await asyncio.wait_for(events.failures.get(), 10)
    finally:
        await connection.stop()
    assert failure.reason is DownReason.DROPPED
    assert failure.detail.startswith("cannot connect: ")
    return recorded, failure.detail


async def test_the_handshake_is_presigned_with_the_default_credential_chain(
    pki: Pki, listener: RecordingListener
) -> None:
    recorded, _ = await handshake_of_the_link(pki, listener)
    assert recorded.path.startswith("/mqtt?")
    assert recorded.headers["Host"] == BROKER_HOST
    assert recorded.headers["Sec-WebSocket-Protocol"] == "mqtt"
    signed = parse_presigned(recorded.path)
    assert (signed.access_key, signed.region, signed.service) == (
        ACCESS_KEY,
        REGION,
        "iotdevicegateway",
    )
    assert signed.security_token == SESSION_TOKEN  # appended, not signed: as AWS IoT wants
    assert "Authorization" not in recorded.headers


async def test_the_signature_verifies_against_the_request_as_received(
    pki: Pki, listener: RecordingListener
) -> None:
    recorded, _ = await handshake_of_the_link(pki, listener)
    signature = parse_presigned(recorded.path).signature
    assert expected_signature("GET", recorded.path, recorded.headers, SECRET_KEY) == signature
    assert expected_signature("GET", recorded.path, recorded.headers, "not-the-key") != signature


async def test_a_refused_handshake_is_reported(pki: Pki, listener: RecordingListener) -> None:
    _, failure = await handshake_of_the_link(pki, listener)
    assert "WEBSOCKET_UPGRADE_FAILURE" in failure
    await asyncio.sleep(1.0)  # ten of its back-off periods
    assert listener.requests.empty()  # reconnect off: the CRT did not try again by itself


async def test_the_handshake_matches_the_sdk_builder(pki: Pki, listener: RecordingListener) -> None:
    ours, _ = await handshake_of_the_link(pki, listener)
    builder_client = mqtt5_client_builder.websockets_with_default_aws_signing(
        region=REGION,
        credentials_provider=auth.AwsCredentialsProvider.new_default_chain(),
        endpoint=BROKER_HOST,
        port=listener.port,
        ca_filepath=str(pki.ca),
        client_id="CP1",
        enable_metrics_collection=False,
    )
    builder_client.start()
    try:
        theirs = await listener.next()
    finally:
        builder_client.stop()
    ours_signed, theirs_signed = parse_presigned(ours.path), parse_presigned(theirs.path)
    assert sorted(ours_signed.parameters) == sorted(theirs_signed.parameters)
    assert ours_signed.signed_headers == theirs_signed.signed_headers
    assert (ours_signed.access_key, ours_signed.region, ours_signed.service) == (
        theirs_signed.access_key,
        theirs_signed.region,
        theirs_signed.service,
    )
    assert ours_signed.security_token == theirs_signed.security_token
    assert ours.headers.keys() == theirs.headers.keys()
