"""The connected-CP API: list the charge points connected to this replica, close one.

Served on its own port (`GATEWAY_ADMIN_PORT`, bound to `GATEWAY_ADMIN_HOST`, 127.0.0.1 by
default) and only when a bearer token is configured (`GATEWAY_ADMIN_TOKEN`). It cannot share
the charge points' port: websockets 15 and 16 refuse any method but GET while parsing the
request, before `process_request` sees it, and every version refuses a request body, so a
DELETE with a JSON body never reaches the gateway there. `api` decides the answers (no I/O
but the close itself); `http` is the small HTTP/1.1 server around it; `cli` is
`ocpp-gateway-admin`.
"""

from __future__ import annotations

from gateway.admin.api import AdminApi
from gateway.admin.http import AdminServer

__all__ = ["AdminApi", "AdminServer"]
