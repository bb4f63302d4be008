"""The awscrt link's pure parts: endpoint, ALPN, TLS material, and the SigV4 handshake signature."""

from __future__ import annotations

import concurrent.futures
import datetime
from typing import Any

import pytest
from awscrt import auth, http, mqtt5

from gateway.links import LinkMisconfigured
from gateway.links.broker import BrokerSettings
from gateway.links.broker_url import region_of_iot_endpoint
from gateway.links.crt_connection import (
    CrtEndpoint,
    CrtFactory,
    alpn_protocols,
    crt_endpoint,
    sigv4_handshake_signer,
)
from gateway.links.tls import TlsConfigError, TlsMaterial
from gateway.settings import Settings
from tests.support.sigv4 import expected_signature, parse_presigned, signed_at
from tests.support.tls import Pki, make_pki

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjE/session+token=="
IOT_HOST = "abc123-ats.iot.eu-west-1.amazonaws.com"


@pytest.fixture(autouse=True)
def _no_ambient_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "IOT_ENDPOINT",
        "IOT_PORT",
        "AWS_REGION",
        "GATEWAY_MQTT_URL",
        "GATEWAY_LINK_IMPL",
        "GATEWAY_LINK_MODE",
        "GATEWAY_MQTT_AUTH",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(**values: Any) -> BrokerSettings:
    return BrokerSettings.from_settings(
        Settings(_env_file=None, **{"link_impl": "awscrt", **values}), "gw"
    )


@pytest.mark.parametrize(
    ("host", "region"),
    [
        (IOT_HOST, "eu-west-1"),
        ("a1b2c3-ats.iot.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("a1b2c3.ats.iot.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("broker.example.com", None),
        ("localhost", None),
    ],
)
def test_region_of_iot_endpoint(host: str, region: str | None) -> None:
    assert region_of_iot_endpoint(host) == region


def test_endpoint_for_plain_and_mutual_tls() -> None:
    assert crt_endpoint(settings(mqtt_url="mqtt://user:pw@h:1884")) == CrtEndpoint(
        "h", 1884, tls=False, username="user", password="pw"
    )
    assert crt_endpoint(settings(mqtt_url=f"mqtts://{IOT_HOST}")) == CrtEndpoint(
        IOT_HOST, 8883, tls=True
    )


def test_sigv4_endpoint_defaults_to_443_and_the_endpoint_region() -> None:
    endpoint = crt_endpoint(settings(mqtt_url=f"mqtts://{IOT_HOST}", mqtt_auth="sigv4"))
    assert endpoint == CrtEndpoint(IOT_HOST, 443, tls=True, sigv4_region="eu-west-1")


def test_sigv4_endpoint_keeps_an_explicit_port_and_aws_region() -> None:
    endpoint = crt_endpoint(
        settings(mqtt_url="mqtts://localhost:9443", mqtt_auth="sigv4", aws_region="us-east-2")
    )
    assert (endpoint.port, endpoint.sigv4_region) == (9443, "us-east-2")


def test_sigv4_without_a_region_says_to_set_aws_region() -> None:
    with pytest.raises(LinkMisconfigured) as refused:
        crt_endpoint(settings(mqtt_url="mqtts://broker.example.com", mqtt_auth="sigv4"))
    assert "set AWS_REGION" in str(refused.value)


@pytest.mark.parametrize(
    ("endpoint", "configured", "expected"),
    [
        (CrtEndpoint(IOT_HOST, 443, True), (), ("x-amzn-mqtt-ca",)),
        (CrtEndpoint(IOT_HOST, 443, True, sigv4_region="eu-west-1"), (), ("http/1.1",)),
        (CrtEndpoint(IOT_HOST, 8883, True), (), ()),
        (CrtEndpoint(IOT_HOST, 8883, True), ("mqtt",), ("mqtt",)),
    ],
)
def test_alpn_follows_the_sdk_builders_on_443(
    endpoint: CrtEndpoint, configured: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert alpn_protocols(endpoint, TlsMaterial(alpn=configured)) == expected


def test_factory_refuses_a_key_the_crt_cannot_use(pki: Pki) -> None:
    garbage_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(TlsConfigError) as refused:
        CrtFactory(
            settings(mqtt_url="mqtts://h", mqtt_cert_file=pki.client.cert, mqtt_key_pem=garbage_key)
        )
    message = str(refused.value)
    assert "check that they are PEM and that the key belongs to the certificate" in message
    assert "AAAA" not in message


def test_factory_accepts_files_and_pem_text(pki: Pki) -> None:
    CrtFactory(
        settings(
            mqtt_url="mqtts://h",
            mqtt_ca_file=pki.ca,
            mqtt_cert_file=pki.client.cert,
            mqtt_key_pem=pki.client.key_pem(),
        )
    )


# -- SigV4 ----------------------------------------------------------------------------------


def sign_handshake(
    credentials: auth.AwsCredentialsProvider, region: str = "eu-west-1"
) -> http.HttpRequest:
    """Run the link's handshake signer on the request the CRT sends for a WebSocket upgrade."""
    request = http.HttpRequest(
        "GET",
        "/mqtt",
        http.HttpHeaders(
            [
                ("Host", IOT_HOST),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Protocol", "mqtt"),
            ]
        ),
    )
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    signer = sigv4_handshake_signer(credentials, region)
    signer(transform_args=mqtt5.WebsocketHandshakeTransformArgs(None, request, done))
    done.result(timeout=10)
    return request


def test_handshake_is_presigned_for_aws_iot() -> None:
    credentials = auth.AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    request = sign_handshake(credentials)
    assert request.path.startswith("/mqtt?")
    signed = parse_presigned(request.path)
    assert (signed.access_key, signed.region, signed.service) == (
        ACCESS_KEY,
        "eu-west-1",
        "iotdevicegateway",
    )
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - signed_at(signed)).total_seconds()) < 300
    assert signed.security_token == SESSION_TOKEN


def test_handshake_signature_verifies_independently() -> None:
    credentials = auth.AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    request = sign_handshake(credentials)
    headers = dict(request.headers)
    signature = parse_presigned(request.path).signature
    assert expected_signature("GET", request.path, headers, SECRET_KEY) == signature
    # Wrong secret: no match. Session token inside the signature: no match either, because
    # AWS IoT wants the token appended after signing.
    assert expected_signature("GET", request.path, headers, "wrong") != signature
    assert (
        expected_signature(
            "GET", request.path, headers, SECRET_KEY, unsigned_parameters=("X-Amz-Signature",)
        )
        != signature
    )


def test_handshake_without_session_token_has_none() -> None:
    credentials = auth.AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY)
    request = sign_handshake(credentials)
    assert parse_presigned(request.path).security_token is None


def test_missing_credentials_fail_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception, match="AWS_AUTH_SIGNING_NO_CREDENTIALS"):
        sign_handshake(auth.AwsCredentialsProvider.new_environment())
