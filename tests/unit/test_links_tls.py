"""TLS settings and material for the broker links: every bad input gets a clear answer."""

from __future__ import annotations

import importlib.util
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.links.errors import LinkMisconfigured
from gateway.links.tls import (
    TlsConfigError,
    TlsMaterial,
    load_tls_material,
    pem_bytes,
    ssl_context,
    tls_context_for,
    tls_failure,
)
from gateway.settings import LinkImpl, MqttAuth, Settings
from tests.support.tls import Pki, make_pki

AWS_NAMES = ("IOT_ENDPOINT", "IOT_PORT", "AWS_REGION")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _no_ambient_broker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name in ("GATEWAY_MQTT_URL", "GATEWAY_LINK_IMPL", "GATEWAY_MQTT_AUTH", "GATEWAY_MQTT_ALPN"):
        monkeypatch.delenv(name, raising=False)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


# -- settings -----------------------------------------------------------------------------


def test_defaults_are_plain_crt_with_certificate_auth() -> None:
    defaults = settings()
    assert defaults.link_impl is LinkImpl.AWSCRT  # the fastest installed (the dev extras have it)
    assert defaults.mqtt_auth is MqttAuth.CERTIFICATE
    assert defaults.mqtt_url == "mqtt://127.0.0.1:1883"
    assert defaults.mqtt_alpn == []


def test_iot_endpoint_names_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_ENDPOINT", "abc-ats.iot.eu-west-1.amazonaws.com")
    assert settings().mqtt_url == "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883"
    monkeypatch.setenv("IOT_PORT", "443")
    assert settings().mqtt_url == "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443"


def test_sigv4_reaches_iot_endpoint_on_443(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_ENDPOINT", "abc-ats.iot.eu-west-1.amazonaws.com")
    chosen = settings(link_impl="awscrt", mqtt_auth="sigv4")
    assert chosen.mqtt_url == "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443"


def test_explicit_mqtt_url_wins_over_iot_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_ENDPOINT", "abc-ats.iot.eu-west-1.amazonaws.com")
    monkeypatch.setenv("GATEWAY_MQTT_URL", "mqtt://broker:1883")
    assert settings().mqtt_url == "mqtt://broker:1883"


def test_alpn_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MQTT_ALPN", "x-amzn-mqtt-ca, mqtt")
    assert settings(mqtt_url="mqtts://h:443").mqtt_alpn == ["x-amzn-mqtt-ca", "mqtt"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"mqtt_url": "mqtts://h", "mqtt_ca_file": "/ca.pem", "mqtt_ca_pem": "x"},
            "set GATEWAY_MQTT_CA_FILE or GATEWAY_MQTT_CA_PEM, not both",
        ),
        (
            {"mqtt_url": "mqtts://h", "mqtt_cert_file": "/cert.pem"},
            "GATEWAY_MQTT_CERT_FILE/_PEM is set but GATEWAY_MQTT_KEY_FILE/_PEM is not",
        ),
        (
            {"mqtt_url": "mqtts://h", "mqtt_key_pem": "x"},
            "GATEWAY_MQTT_KEY_FILE/_PEM is set but GATEWAY_MQTT_CERT_FILE/_PEM is not",
        ),
        (
            {"mqtt_url": "mqtt://h", "mqtt_ca_file": "/ca.pem"},
            "GATEWAY_MQTT_URL is plain mqtt://: use mqtts://host:port",
        ),
        (
            {"mqtt_url": "mqtt://h", "mqtt_alpn": "x-amzn-mqtt-ca"},
            "GATEWAY_MQTT_URL is plain mqtt://: use mqtts://host:port",
        ),
        (
            {"mqtt_url": "mqtts://h", "mqtt_auth": "sigv4", "link_impl": "aiomqtt"},
            "GATEWAY_MQTT_AUTH=sigv4 needs GATEWAY_LINK_IMPL=awscrt",
        ),
        (
            {
                "mqtt_url": "mqtts://h",
                "mqtt_auth": "sigv4",
                "link_impl": "awscrt",
                "mqtt_cert_file": "/c",
                "mqtt_key_file": "/k",
            },
            "signs with AWS credentials: remove the client certificate",
        ),
        (
            {
                "mqtt_url": "mqtts://h",
                "mqtt_auth": "sigv4",
                "link_impl": "awscrt",
                "mqtt_alpn": "x",
            },
            "unset GATEWAY_MQTT_ALPN",
        ),
        (
            {"mqtt_url": "mqtt://h", "mqtt_auth": "sigv4", "link_impl": "awscrt"},
            "use mqtts://<endpoint>:443",
        ),
    ],
)
def test_contradictory_broker_settings_are_refused(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(**values)
    assert expected in str(refused.value)


def test_configuration_errors_never_show_a_secret() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----"
    with pytest.raises(ValidationError) as refused:
        settings(mqtt_url="mqtt://h", mqtt_key_pem=secret)
    assert "TOPSECRET" not in str(refused.value)
    assert "TOPSECRET" not in repr(
        settings(mqtt_url="mqtts://h", mqtt_key_pem=secret, mqtt_cert_pem="c")
    )


# -- PEM text -----------------------------------------------------------------------------


def test_pem_text_is_kept_as_given(pki: Pki) -> None:
    text = pki.ca.read_bytes()
    assert pem_bytes(text, "GATEWAY_MQTT_CA_PEM") == text


def test_pem_with_escaped_newlines_and_quotes_is_repaired(pki: Pki) -> None:
    text = pki.ca.read_text()
    one_line = '"' + text.strip().replace("\n", "\\n") + '"'
    assert pem_bytes(one_line.encode(), "GATEWAY_MQTT_CA_PEM") == text.encode()


@pytest.mark.parametrize("content", [b"", b"   ", b"not a certificate", b"MIIBszCCAVmgAwIBAgIU"])
def test_text_that_is_not_pem_is_refused_without_quoting_it(content: bytes) -> None:
    with pytest.raises(TlsConfigError) as refused:
        pem_bytes(content, "GATEWAY_MQTT_KEY_PEM")
    message = str(refused.value)
    assert message.startswith("GATEWAY_MQTT_KEY_PEM does not hold PEM text")
    if content.strip():
        assert content.decode() not in message


# -- material and contexts ----------------------------------------------------------------


def test_material_from_files(pki: Pki) -> None:
    material = load_tls_material(
        settings(
            mqtt_url="mqtts://h",
            mqtt_ca_file=pki.ca,
            mqtt_cert_file=pki.client.cert,
            mqtt_key_file=pki.client.key,
            mqtt_alpn="x-amzn-mqtt-ca",
        )
    )
    assert material.ca_pem == pki.ca.read_bytes()
    assert material.cert_pem == pki.client.cert.read_bytes()
    assert material.key_pem == pki.client.key.read_bytes()
    assert material.alpn == ("x-amzn-mqtt-ca",)
    assert material.has_client_certificate
    assert "PRIVATE" not in repr(material)


def test_material_from_environment_pem(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MQTT_CA_PEM", pki.ca.read_text())
    monkeypatch.setenv("GATEWAY_MQTT_CERT_PEM", pki.client.cert_pem())
    monkeypatch.setenv("GATEWAY_MQTT_KEY_PEM", pki.client.key_pem().replace("\n", "\\n"))
    material = load_tls_material(settings(mqtt_url="mqtts://h"))
    assert material.key_pem == pki.client.key.read_bytes()
    assert isinstance(ssl_context(material), ssl.SSLContext)


def test_unreadable_file_names_the_setting_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TlsConfigError) as refused:
        load_tls_material(settings(mqtt_url="mqtts://h", mqtt_ca_file=missing))
    assert (
        str(refused.value)
        == f"cannot read GATEWAY_MQTT_CA_FILE={missing}: No such file or directory"
    )


def test_tls_errors_are_link_misconfigurations() -> None:
    assert issubclass(TlsConfigError, LinkMisconfigured)


def test_plain_broker_needs_no_context() -> None:
    assert tls_context_for(settings(mqtt_url="mqtt://h")) is None


def test_tls_broker_without_material_trusts_the_system() -> None:
    context = tls_context_for(settings(mqtt_url="mqtts://h"))
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_configured_ca_replaces_the_system_trust_store(pki: Pki) -> None:
    context = ssl_context(TlsMaterial(ca_pem=pki.ca.read_bytes()))
    assert [cert["subject"] for cert in context.get_ca_certs()] == [
        ((("commonName", "Gateway Test CA"),),)
    ]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_a_key_that_does_not_belong_to_the_certificate_is_refused(pki: Pki) -> None:
    material = TlsMaterial(
        cert_pem=pki.client.cert.read_bytes(), key_pem=pki.stranger.key.read_bytes()
    )
    with pytest.raises(TlsConfigError) as refused:
        ssl_context(material)
    assert "check that the key belongs to the certificate" in str(refused.value)


def test_an_invalid_ca_is_refused() -> None:
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(TlsConfigError) as refused:
        ssl_context(TlsMaterial(ca_pem=garbage))
    assert "the broker CA is not a valid PEM certificate" in str(refused.value)


def test_the_private_key_leaves_no_file_behind(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    ssl_context(
        TlsMaterial(cert_pem=pki.client.cert.read_bytes(), key_pem=pki.client.key.read_bytes())
    )
    assert list(tmp_path.iterdir()) == []


# -- TLS failures ---------------------------------------------------------------------------


def test_tls_failure_reads_the_verification_error_through_causes() -> None:
    verification = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verification.verify_message = "unable to get local issuer certificate"
    wrapped = RuntimeError("connect failed")
    wrapped.__cause__ = OSError("wrapped")
    wrapped.__cause__.__cause__ = verification
    assert tls_failure(wrapped) == (
        "certificate verify failed: unable to get local issuer certificate"
    )


def test_tls_failure_ignores_errors_that_are_not_tls() -> None:
    assert tls_failure(ConnectionRefusedError(111, "Connection refused")) is None


def test_without_the_crt_installed_the_default_is_aiomqtt(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "awscrt" else real_find_spec(name, *args),
    )
    assert settings().link_impl is LinkImpl.AIOMQTT
    assert settings(link_impl="awscrt").link_impl is LinkImpl.AWSCRT  # asked for: as told
