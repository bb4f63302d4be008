"""TLS (profiles 2 and 3): the server's context, and the client certificate's CN (profile 3)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path

from gateway.security.errors import AuthRefused, SecurityMisconfigured, shown
from gateway.settings import SecurityProfile, Settings

# -- client certificates (profile 3), pure ----------------------------------------------------


def common_names(peercert: Mapping[str, object] | None) -> list[str]:
    """The subject CNs of a certificate as `SSLSocket.getpeercert()` decodes it."""
    if not peercert:
        return []
    subject = peercert.get("subject", ())
    names: list[str] = []
    if isinstance(subject, tuple):
        for rdn in subject:
            for attribute in rdn if isinstance(rdn, tuple) else ():
                is_pair = isinstance(attribute, tuple) and len(attribute) == 2
                if is_pair and attribute[0] == "commonName":
                    names.append(str(attribute[1]))
    return names


def client_certificate_refusal(
    cp_id: str, peercert: Mapping[str, object] | None
) -> AuthRefused | None:
    """None when the certificate's only subject CN is `cp_id`; else the refusal.

    No certificate at all gets a 401 (the TLS context lets the handshake through without one, so
    that this answer, /health and /metrics reach such clients); a certificate with another CN gets
    a 403 naming what was found.
    """
    if not peercert:
        # No WWW-Authenticate: HTTP has no challenge that asks for a client certificate.
        return AuthRefused(
            HTTPStatus.UNAUTHORIZED,
            "security profile 3: this gateway needs a client certificate whose CN is the charge "
            f"point id {cp_id}",
            detail="no client certificate",
        )
    names = common_names(peercert)
    if names == [cp_id]:
        return None
    if not names:
        found = "has no subject CN"
    elif len(names) == 1:
        found = f"has the subject CN {shown(names[0], 64)}"
    else:
        found = f"has {len(names)} subject CNs ({', '.join(shown(n, 64) for n in names[:4])})"
    return AuthRefused(
        HTTPStatus.FORBIDDEN,
        f"the client certificate {found}; it must be the charge point id {cp_id}",
        detail="client certificate CN mismatch",
    )


# -- the server's TLS context -----------------------------------------------------------------


def build_server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The gateway's TLS context (TLS 1.2+), or None for plain `ws://`.

    With profile 3, client certificates are asked for and verified against
    `GATEWAY_TLS_CLIENT_CA_FILE` only (never the system's CAs): one that does not verify fails the
    handshake. One that is missing does not (`CERT_OPTIONAL`), so that health checks, which
    cannot present one, reach /health and /metrics; charge points without one are refused with
    HTTP 401 before the upgrade (`client_certificate_refusal`).
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert, key = settings.tls_cert_file, settings.tls_key_file
    _check_pem("GATEWAY_TLS_CERT_FILE", cert, "CERTIFICATE-----", "PEM certificate")
    _check_pem("GATEWAY_TLS_KEY_FILE", key, "PRIVATE KEY-----", "PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def encrypted_key() -> str:
        raise SecurityMisconfigured(
            f"GATEWAY_TLS_KEY_FILE: {key} is encrypted; give the key unencrypted "
            "(protect the file instead)"
        )

    try:
        context.load_cert_chain(cert, key, password=encrypted_key)
    except ssl.SSLError as exc:
        raise SecurityMisconfigured(
            f"GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE: cannot use {cert} with {key}: "
            f"{_ssl_problem(exc)}"
        ) from None
    if settings.security_profile is SecurityProfile.TLS_CLIENT_CERT:
        ca = settings.tls_client_ca_file
        assert ca is not None  # the settings refuse profile 3 without it
        _check_pem("GATEWAY_TLS_CLIENT_CA_FILE", ca, "CERTIFICATE-----", "PEM certificate")
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise SecurityMisconfigured(
                f"GATEWAY_TLS_CLIENT_CA_FILE: cannot use {ca}: {_ssl_problem(exc)}"
            ) from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _check_pem(variable: str, path: Path, marker: str, what: str) -> None:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise SecurityMisconfigured(f"{variable}: {path} does not exist") from None
    except IsADirectoryError:
        raise SecurityMisconfigured(f"{variable}: {path} is a directory, not a file") from None
    except OSError as exc:
        raise SecurityMisconfigured(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if marker.encode() not in text:
        raise SecurityMisconfigured(f"{variable}: {path} holds no {what}")


def _ssl_problem(exc: ssl.SSLError) -> str:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return "the private key does not belong to the certificate"
    return str(exc.reason or exc).lower().replace("_", " ")
