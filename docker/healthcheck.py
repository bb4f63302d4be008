"""Container health check: exit 0 when the gateway's `GET /health` answers 200, else 1.

Run by the image's HEALTHCHECK with the image's own Python (the slim base has no curl).
The port comes from `GATEWAY_PORT` or `OCPP_GATEWAY_PORT`, as for the gateway itself.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 8080
TIMEOUT_SECONDS = 2.0


def health_url(environ: Mapping[str, str]) -> str:
    port = environ.get("GATEWAY_PORT") or environ.get("OCPP_GATEWAY_PORT") or str(DEFAULT_PORT)
    if not port.isdigit():
        raise ValueError(f"GATEWAY_PORT must be a port number, got {port!r}")
    return f"http://127.0.0.1:{int(port)}/health"


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(healthy, one line saying why) for the health endpoint at `url`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
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
