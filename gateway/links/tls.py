"""TLS to the broker: the CA, client certificate and key, read once per link and shared.

Each item comes from a file (`GATEWAY_MQTT_CA_FILE`, `GATEWAY_MQTT_CERT_FILE`,
`GATEWAY_MQTT_KEY_FILE`) or from an environment variable holding the PEM text
(`GATEWAY_MQTT_CA_PEM`, ...), the way ECS injects secrets. The private key never appears in a
log line or an error message. Python's `ssl` module loads a certificate and key only from
files, so PEM text given in the environment is written to a private directory (0700, files
0600) for the instant of loading and removed at once.

Thousands of per-CP clients share one context: building one costs milliseconds of CPU and
memory for the trust store, which would add up at every reconnect of a large fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from gateway.links.broker_url import parse_broker_url
from gateway.links.errors import LinkMisconfigured

if TYPE_CHECKING:
    from gateway.links.broker import BrokerSettings

PEM_BEGIN = b"-----BEGIN "
CLIENT_CERT_VERDICT_WAIT = 0.5


class TlsConfigError(LinkMisconfigured):
    """The TLS settings cannot be used; the message names the setting and what to do."""


@dataclass(frozen=True)
class TlsMaterial:
    """What a link needs to open TLS connections to the broker."""

    ca_pem: bytes | None = None  # None: trust the system's certificate authorities
    cert_pem: bytes | None = None
    key_pem: bytes | None = field(default=None, repr=False)
    alpn: tuple[str, ...] = ()

    @property
    def has_client_certificate(self) -> bool:
        return self.cert_pem is not None


def tls_context_for(settings: BrokerSettings) -> ssl.SSLContext | None:
    """The `ssl` context for aiomqtt and the TLS diagnosis; None for a plain `mqtt://` broker."""
    if not parse_broker_url(settings.mqtt_url).tls:
        return None
    return ssl_context(load_tls_material(settings))


def load_tls_material(settings: BrokerSettings) -> TlsMaterial:
    """Read and check the configured CA, certificate and key; raises `TlsConfigError`."""
    return TlsMaterial(
        ca_pem=_pem_setting("CA", settings.mqtt_ca_file, settings.mqtt_ca_pem),
        cert_pem=_pem_setting("CERT", settings.mqtt_cert_file, settings.mqtt_cert_pem),
        key_pem=_pem_setting("KEY", settings.mqtt_key_file, settings.mqtt_key_pem),
        alpn=tuple(settings.mqtt_alpn),
    )


def _pem_setting(item: str, path: Path | None, text: SecretStr | None) -> bytes | None:
    if path is not None:
        name = f"GATEWAY_MQTT_{item}_FILE"
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"cannot read {name}={path}: {exc.strerror}") from None
        return pem_bytes(content, f"{name}={path}")
    if text is not None:
        return pem_bytes(text.get_secret_value().encode(), f"GATEWAY_MQTT_{item}_PEM")
    return None


def pem_bytes(content: bytes, source: str) -> bytes:
    """PEM text as given, tolerating what secret stores do to it; raises `TlsConfigError`.

    Secrets pasted as one line often carry literal `\\n` sequences instead of line breaks, and
    surrounding quotes or blanks: both are undone. The content itself is never quoted back.
    """
    text = content.strip().strip(b"\"'").strip()
    if b"\n" not in text and b"\\n" in text:
        text = text.replace(b"\\n", b"\n").strip()
    if not text.startswith(PEM_BEGIN):
        raise TlsConfigError(
            f"{source} does not hold PEM text: it should start with '-----BEGIN' "
            "(a base64 certificate or key between BEGIN/END lines)"
        )
    return text + b"\n"


def ssl_context(material: TlsMaterial) -> ssl.SSLContext:
    """One client context for aiomqtt: verifies the broker, presents the client certificate."""
    if material.ca_pem is None:
        context = ssl.create_default_context()
    else:
        try:
            # With `cadata`, only this CA is trusted (not the system's).
            context = ssl.create_default_context(cadata=material.ca_pem.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"the broker CA is not a valid PEM certificate ({exc.reason or 'unreadable'})"
            ) from None
    if material.cert_pem is not None and material.key_pem is not None:
        _load_client_certificate(context, material.cert_pem, material.key_pem)
    if material.alpn:
        context.set_alpn_protocols(list(material.alpn))
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    directory = tempfile.mkdtemp(prefix="gateway-tls-")  # created 0700, for this process only
    try:
        cert_path = _write_private(Path(directory) / "cert.pem", cert_pem)
        key_path = _write_private(Path(directory) / "key.pem", key_pem)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                "the client certificate and private key cannot be used together "
                f"({exc.reason or 'unreadable'}): check that the key belongs to the certificate"
            ) from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_private(path: Path, content: bytes) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    return path


def tls_failure(error: BaseException) -> str | None:
    """The TLS reason behind a connection error (or its causes), or None if it is not TLS."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return str(current.reason or current).replace("_", " ").lower()
        current = current.__cause__ or current.__context__
    return None


async def diagnose_tls(
    host: str, port: int, context: ssl.SSLContext, connect_timeout: float
) -> str | None:
    """Handshake with Python's `ssl` to learn why TLS fails; None if it succeeds or is not TLS.

    MQTT clients tell little: the AWS CRT reports "negotiation failed" after a deliberate delay
    of 10-30 s, and with TLS 1.3 a broker's refusal of the client certificate reaches paho only
    as a timeout. This tells the operator at once which certificate is wrong.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        return tls_failure(exc)
    try:
        # With TLS 1.3 a refused client certificate shows only on the first read.
        await asyncio.wait_for(reader.read(1), min(connect_timeout, CLIENT_CERT_VERDICT_WAIT))
    except (OSError, TimeoutError) as exc:
        return tls_failure(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return None
