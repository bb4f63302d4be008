"""A throwaway certificate authority for tests: broker, client and an unrelated "wrong" CA.

Files land in a world-readable directory because Mosquitto drops root to user `mosquitto`
before it reads its TLS files; nothing here protects anything real.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .mosquitto import MosquittoProcess, start_broker
from .ports import free_port, wait_for_port

BROKER_HOST = "localhost"
# What the default AWS credential chain finds first, as it finds the ECS task role's in AWS.
STATIC_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "session-token",
    "AWS_REGION": "eu-west-1",
}
_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def cert_pem(self) -> str:
        return self.cert.read_text()

    def key_pem(self) -> str:
        return self.key.read_text()


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path
    broker: Issued
    client: Issued
    wrong_ca: Path
    # Signed by the wrong CA: a broker that demands a client certificate refuses it.
    stranger: Issued


def make_pki(directory: Path | None = None) -> Pki:
    """Certificates in `directory` (default: a new one under the system's temp directory).

    For Mosquitto, every parent of `directory` must be searchable by user `mosquitto`.
    """
    directory = directory or Path(tempfile.mkdtemp(prefix="test-pki-"))
    directory.chmod(0o755)
    ca_key, ca_cert = _make_ca("Gateway Test CA")
    wrong_key, wrong_cert = _make_ca("Somebody Else's CA")
    broker_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = _issue(
        ca_key,
        ca_cert,
        broker_key,
        "broker",
        server=True,
        names=[x509.DNSName(BROKER_HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_cert = _issue(ca_key, ca_cert, client_key, "ocpp-gateway", server=False)
    stranger_cert = _issue(wrong_key, wrong_cert, stranger_key, "stranger", server=False)
    _write(directory / CA_KEY_FILE, _key_pem(ca_key))  # for `issue_client_cert`
    return Pki(
        directory=directory,
        ca=_write(directory / "ca.pem", _cert_pem(ca_cert)),
        broker=_write_pair(directory, "broker", broker_cert, broker_key),
        client=_write_pair(directory, "client", client_cert, client_key),
        wrong_ca=_write(directory / "wrong-ca.pem", _cert_pem(wrong_cert)),
        stranger=_write_pair(directory, "stranger", stranger_cert, stranger_key),
    )


CA_KEY_FILE = "ca.key"


def issue_client_cert(pki: Pki, common_name: str, file_name: str | None = None) -> Issued:
    """Another client certificate from the test CA, e.g. one whose CN is a charge point id."""
    ca_key = serialization.load_pem_private_key((pki.directory / CA_KEY_FILE).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(ca_key, ca_cert, key, common_name, server=False)
    return _write_pair(pki.directory, file_name or f"client-{common_name}", cert, key)


def _make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    server: bool,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pair(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issued(
        cert=_write(directory / f"{name}.pem", _cert_pem(cert)),
        key=_write(directory / f"{name}.key", key_pem),
    )


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    os.chmod(path, 0o644)
    return path


def tls_listeners(pki: Pki, mtls_port: int, websockets_port: int) -> list[str]:
    """Mosquitto config lines: mutual TLS on one port, MQTT over secure WebSockets on another.

    The WebSocket listener checks the broker's side of TLS only, as AWS IoT Core does for
    SigV4-signed WebSockets (Mosquitto ignores the signature itself).
    """
    server_files = [f"cafile {pki.ca}", f"certfile {pki.broker.cert}", f"keyfile {pki.broker.key}"]
    return [
        f"listener {mtls_port} 127.0.0.1",
        *server_files,
        "require_certificate true",
        f"listener {websockets_port} 127.0.0.1",
        "protocol websockets",
        *server_files,
    ]


@dataclass
class TlsBroker:
    """A Mosquitto with a plain, a mutual-TLS and a secure-WebSocket listener."""

    pki: Pki
    mtls_port: int = field(default_factory=free_port)
    websockets_port: int = field(default_factory=free_port)
    process: MosquittoProcess | None = None

    def start(self, *extra_config: str) -> TlsBroker:
        self.process = start_broker(
            extra_config=[
                *extra_config,
                *tls_listeners(self.pki, self.mtls_port, self.websockets_port),
            ]
        )
        # The broker is up once its first (plain) listener is; the others open just after.
        for port in (self.mtls_port, self.websockets_port):
            wait_for_port("127.0.0.1", port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    @property
    def plain_url(self) -> str:
        assert self.process is not None
        return self.process.url


@dataclass(frozen=True)
class LinkUnderTest:
    """How a gateway reaches the broker with one link: as settings and as environment."""

    name: str
    url: str
    values: dict[str, str]

    @property
    def settings(self) -> dict[str, Any]:
        return {key.lower(): value for key, value in self.values.items()}

    @property
    def env(self) -> dict[str, str]:
        return {f"GATEWAY_{key.upper()}": value for key, value in self.values.items()}


def link_setup(name: str, broker: TlsBroker, ca: Path | None = None) -> LinkUnderTest:
    impl, auth = name.split("-")
    pki = broker.pki
    values = {"link_impl": impl, "link_mode": "per-cp"}
    if auth == "plain":
        return LinkUnderTest(name, broker.plain_url, values)
    values["mqtt_ca_file"] = str(ca or pki.ca)
    if auth == "mtls":
        values.update(mqtt_cert_file=str(pki.client.cert), mqtt_key_file=str(pki.client.key))
        return LinkUnderTest(name, f"mqtts://{BROKER_HOST}:{broker.mtls_port}", values)
    values["mqtt_auth"] = "sigv4"
    return LinkUnderTest(name, f"mqtts://{BROKER_HOST}:{broker.websockets_port}", values)
