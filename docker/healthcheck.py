"""Container health check: exit 0 when the gateway's `GET /health` answers 200, else 1.

Run by the image's HEALTHCHECK with the image's own Python (the slim base has no curl).
The port comes from `GATEWAY_PORT` or `OCPP_GATEWAY_PORT`, as for the gateway itself. When the
gateway serves TLS (`GATEWAY_TLS_CERT_FILE` set, which security profiles 2 and 3 require), the
check uses https.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 8080
TIMEOUT_SECONDS = 2.0
# Profiles that serve wss://: the gateway refuses to start with them unless it has a certificate.
TLS_PROFILES = {"2", "3"}


def serves_tls(environ: Mapping[str, str]) -> bool:
    """Whether the gateway serves TLS, decided as its settings do: it does whenever it has a
    certificate, and profiles 2 and 3 do not start without one."""
    return bool(environ.get("GATEWAY_TLS_CERT_FILE", "").strip()) or (
        environ.get("GATEWAY_SECURITY_PROFILE", "").strip() in TLS_PROFILES
    )


def health_url(environ: Mapping[str, str]) -> str:
    port = environ.get("GATEWAY_PORT") or environ.get("OCPP_GATEWAY_PORT") or str(DEFAULT_PORT)
    if not port.isdigit():
        raise ValueError(f"GATEWAY_PORT must be a port number, got {port!r}")
    scheme = "https" if serves_tls(environ) else "http"
    return f"{scheme}://127.0.0.1:{int(port)}/health"


def loopback_tls_context() -> ssl.SSLContext:
    """TLS without verifying the gateway's certificate.

    The container checks itself over loopback: nothing crosses a network, and the certificate
    names the host charge points dial (not 127.0.0.1), signed by a CA the image need not trust.
    With profile 3 no client certificate is needed: /health answers clients without one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(healthy, one line saying why) for the health endpoint at `url`."""
    context = loopback_tls_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            body = response.read(512).decode("utf-8", "replace").strip()
            return response.status == 200, f"{response.status} {body}"
    except urllib.error.HTTPError as exc:
        body = exc.read(512).decode("utf-8", "replace").strip()
        return False, f"{exc.code} {body}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"unreachable: {reason}"


def main() -> int:
    try:
        url = health_url(os.environ)
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    healthy, detail = check(url)
    print(f"healthcheck: {url} -> {detail}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
