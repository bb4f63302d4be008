"""OCPP security profiles from the simulator's side: Basic auth (1), TLS with Basic auth (2),
TLS with a client certificate (3), against a real TLS WebSocket server."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.echo_csms import EchoCsms
from tests.support.simulator_process import SimulatorProcess

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[SimulatorProcess]]


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, require_client_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("Simulator Test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("gateway", server_key, ca_cert.subject, ca_key, ip="127.0.0.1")
    client = _certificate("CP1", client_key, ca_cert.subject, ca_key)
    return Certificates(
        ca=_write(directory / "ca.pem", ca_cert, ca_key),
        server_cert=_write(directory / "server.pem", server, server_key),
        server_key=directory / "server.key",
        client_cert=_write(directory / "client.pem", client, client_key),
        client_key=directory / "client.key",
    )


@pytest.fixture
async def simulator() -> AsyncIterator[Start]:
    started: list[SimulatorProcess] = []

    async def start(*arguments: str) -> SimulatorProcess:
        process = await SimulatorProcess.start(*arguments)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


async def test_profile_1_basic_auth(simulator: Start) -> None:
    async with EchoCsms(passwords={"CP1": "correct horse"}) as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--password", "correct horse", "--heartbeats", "1"
        )  # fmt: skip
        assert await cp.wait() == 0, cp.output
    assert csms.actions("CP1") == ["BootNotification", "Heartbeat"]
    assert "correct horse" not in cp.output


async def test_wrong_password_is_a_clear_refusal(simulator: Start) -> None:
    async with EchoCsms(passwords={"CP1": "correct horse"}) as csms:
        cp = await simulator("--url", csms.url, "--cp-id", "CP1", "--password", "wrong")
        assert await cp.wait() == 1
    assert cp.lines == [
        "ERROR:root:CP1: server rejected WebSocket connection: HTTP 401 (Unauthorized): "
        "bad or missing credentials; check --password (the user name is the charge point id)"
    ]
    assert csms.connections["CP1"] == 0


async def test_profile_2_tls_with_basic_auth(certificates: Certificates, simulator: Start) -> None:
    context = certificates.server_context(require_client_cert=False)
    async with EchoCsms(ssl_context=context, passwords={"CP1": "pw"}) as csms:
        assert csms.url.startswith("wss://")
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--password", "pw",
            "--ca-file", str(certificates.ca), "--heartbeats", "1",
        )  # fmt: skip
        assert await cp.wait() == 0, cp.output
    assert csms.actions("CP1") == ["BootNotification", "Heartbeat"]


async def test_profile_3_client_certificate(certificates: Certificates, simulator: Start) -> None:
    context = certificates.server_context(require_client_cert=True)
    async with EchoCsms(ssl_context=context) as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--ca-file", str(certificates.ca),
            "--client-cert", str(certificates.client_cert),
            "--client-key", str(certificates.client_key), "--heartbeats", "1",
        )  # fmt: skip
        assert await cp.wait() == 0, cp.output
    subject = dict(entry[0] for entry in csms.peer_certificates["CP1"]["subject"])
    assert subject["commonName"] == "CP1"


async def test_untrusted_server_certificate_is_explained(
    certificates: Certificates, simulator: Start
) -> None:
    context = certificates.server_context(require_client_cert=False)
    async with EchoCsms(ssl_context=context) as csms:
        cp = await simulator("--url", csms.url, "--cp-id", "CP1")
        assert await cp.wait() == 1
    [line] = cp.lines
    assert line.startswith(f"ERROR:root:CP1: TLS verification of {csms.url}/CP1 failed: ")
    assert line.endswith("(see --ca-file)")


async def test_unreadable_tls_file_is_a_usage_error(tmp_path: Path, simulator: Start) -> None:
    cp = await simulator(
        "--url", "wss://127.0.0.1:1", "--cp-id", "CP1", "--ca-file", str(tmp_path / "none.pem")
    )
    assert await cp.wait() == 2
    assert "error: cannot load the TLS files" in cp.output
