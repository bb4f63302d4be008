"""What the connected-CP API answers, given a request and the session table.

Routes (every one needs `Authorization: Bearer <token>`):

- `GET /cps?limit=&after=`: connected charge points ordered by id, at most `limit` (default
  1000, at most 5000) after the id `after`; `next` is the cursor for the following page.
- `GET /cps/<id>`: one charge point.
- `DELETE /cps/<id>`: close its WebSocket with `code` and `reason` from a JSON body or the
  query (default 1000, "closed by operator").
"""

from __future__ import annotations

import hmac
import json
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from gateway.closes import Close
from gateway.cp_stats import CpStats

if TYPE_CHECKING:
    from gateway.sessions import SessionTable

log = structlog.get_logger(__name__)

DEFAULT_PAGE = 1000
MAX_PAGE = 5000
MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes
OPERATOR_CLOSE = Close(1000, "closed by operator")
# 1000 normal, 1001 going away, 1008 policy violation, 1011 internal error, 1012 service
# restart; 3000-4999 are for libraries and applications. Other codes are reserved by RFC 6455
# or mean something an operator should not claim (1002 protocol error, 1009 too big, ...).
ALLOWED_CODES = frozenset({1000, 1001, 1008, 1011, 1012})
APPLICATION_CODES = range(3000, 5000)
CHALLENGE = 'Bearer realm="ocpp-gateway-admin"'


class ConnectedCp(Protocol):
    """What the API reads from a `gateway.session.Session`."""

    cp_id: str
    subprotocol: str
    connection_number: int

    async def close(self, close: Close) -> None: ...


@dataclass(frozen=True)
class AdminRequest:
    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str]  # names in lower case
    body: bytes = b""


@dataclass(frozen=True)
class AdminResponse:
    status: HTTPStatus
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return (json.dumps(self.body, ensure_ascii=False) + "\n").encode()


def error(status: HTTPStatus, message: str, **headers: str) -> AdminResponse:
    return AdminResponse(status, {"error": message}, headers)


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether `Authorization` carries the bearer token; constant time in the token's content."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        presented = ""
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def close_code_problem(code: int) -> str | None:
    if code in ALLOWED_CODES or code in APPLICATION_CODES:
        return None
    return f"code {code} is not allowed: use 1000, 1001, 1008, 1011, 1012 or 3000-4999"


def requested_close(query: Mapping[str, list[str]], body: bytes) -> Close | str:
    """The close asked for in the query and/or a JSON body (the body wins), or the problem."""
    values: dict[str, object] = {
        name: query[name][-1] for name in ("code", "reason") if name in query
    }
    if body.strip():
        try:
            document = json.loads(body)
        except ValueError:
            return 'the body is not JSON: send {"code": 4000, "reason": "..."} or nothing'
        if not isinstance(document, dict):
            return "the body must be a JSON object with `code` and/or `reason`"
        unknown = sorted(set(document) - {"code", "reason"})
        if unknown:
            return f"unknown field(s) {', '.join(unknown)}: only `code` and `reason`"
        values.update(document)
    code = values.get("code", OPERATOR_CLOSE.code)
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if type(code) is not int:
        return "`code` must be an integer"
    problem = close_code_problem(code)
    if problem is not None:
        return problem
    reason = values.get("reason", OPERATOR_CLOSE.reason)
    if not isinstance(reason, str):
        return "`reason` must be a string"
    size = len(reason.encode())
    if size > MAX_REASON_BYTES:
        return f"`reason` is {size} bytes in UTF-8; a close reason holds at most {MAX_REASON_BYTES}"
    return Close(code, reason)


def page_limit(query: Mapping[str, list[str]]) -> int | str:
    if "limit" not in query:
        return DEFAULT_PAGE
    text = query["limit"][-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        return f"`limit` must be an integer from 1 to {MAX_PAGE}"
    return int(text)


def page(
    sessions: Iterable[ConnectedCp], limit: int, after: str | None
) -> tuple[list[ConnectedCp], str | None]:
    """One page of sessions ordered by id, and the cursor for the next page (None: the last)."""
    ordered = sorted(sessions, key=lambda session: session.cp_id)
    start = 0 if after is None else bisect_right(ordered, after, key=lambda s: s.cp_id)
    chosen = ordered[start : start + limit]
    more = start + limit < len(ordered)
    return chosen, chosen[-1].cp_id if more and chosen else None


def iso_utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def remote_address(session: object) -> str | None:
    websocket = getattr(session, "_websocket", None)
    address = getattr(websocket, "remote_address", None)
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def describe(session: ConnectedCp) -> dict[str, Any]:
    """One charge point's entry; counters are null until the session records `CpStats`."""
    stats = getattr(session, "stats", None)
    entry: dict[str, Any] = {
        "id": session.cp_id,
        "connection": session.connection_number,
        "subprotocol": session.subprotocol,
        "remote": remote_address(session),
        "connected_since": None,
        "frames_in": None,
        "bytes_in": None,
        "frames_out": None,
        "bytes_out": None,
        "last_frame_at": None,
    }
    if isinstance(stats, CpStats):
        entry.update(
            connected_since=iso_utc(stats.since),
            frames_in=stats.frames_in,
            bytes_in=stats.bytes_in,
            frames_out=stats.frames_out,
            bytes_out=stats.bytes_out,
            last_frame_at=iso_utc(stats.last_frame_at),
        )
    return entry


class AdminApi:
    def __init__(self, token: str, sessions: SessionTable, gateway_id: str) -> None:
        self._token = token
        self._sessions = sessions
        self._gateway_id = gateway_id

    async def handle(self, request: AdminRequest) -> AdminResponse:
        if not token_matches(request.headers.get("authorization"), self._token):
            return error(
                HTTPStatus.UNAUTHORIZED,
                "send the admin token: Authorization: Bearer <GATEWAY_ADMIN_TOKEN>",
                **{"WWW-Authenticate": CHALLENGE},
            )
        parts = urlsplit(request.target)
        query = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path
        if path == "/cps":
            if request.method != "GET":
                return error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET /cps", Allow="GET")
            return self._list(query)
        if path.startswith("/cps/") and path.count("/") == 2:
            cp_id = unquote(path[len("/cps/") :])
            if request.method == "GET":
                return self._show(cp_id)
            if request.method == "DELETE":
                return await self._disconnect(cp_id, query, request.body)
            return error(
                HTTPStatus.METHOD_NOT_ALLOWED, "use GET or DELETE /cps/<id>", Allow="GET, DELETE"
            )
        return error(HTTPStatus.NOT_FOUND, "the API serves /cps and /cps/<id>")

    def _list(self, query: Mapping[str, list[str]]) -> AdminResponse:
        unknown = sorted(set(query) - {"limit", "after"})
        if unknown:
            return error(HTTPStatus.BAD_REQUEST, f"unknown parameter(s) {', '.join(unknown)}")
        limit = page_limit(query)
        if isinstance(limit, str):
            return error(HTTPStatus.BAD_REQUEST, limit)
        after = query["after"][-1] if "after" in query else None
        sessions = list(self._sessions)
        chosen, cursor = page(sessions, limit, after)
        return AdminResponse(
            HTTPStatus.OK,
            {
                "gateway": self._gateway_id,
                "total": len(sessions),
                "cps": [describe(session) for session in chosen],
                "next": cursor,
            },
        )

    def _show(self, cp_id: str) -> AdminResponse:
        session = self._sessions.get(cp_id)
        if session is None:
            return self._not_connected(cp_id)
        return AdminResponse(HTTPStatus.OK, {"gateway": self._gateway_id, **describe(session)})

    async def _disconnect(
        self, cp_id: str, query: Mapping[str, list[str]], body: bytes
    ) -> AdminResponse:
        close = requested_close(query, body)
        if isinstance(close, str):
            return error(HTTPStatus.BAD_REQUEST, close)
        session = self._sessions.get(cp_id)
        if session is None:
            return self._not_connected(cp_id)
        log.info(
            "cp.closed_by_operator",
            cp_id=cp_id,
            connection=session.connection_number,
            code=close.code,
            reason=close.reason,
        )
        await session.close(close)
        return AdminResponse(
            HTTPStatus.OK,
            {
                "gateway": self._gateway_id,
                "closed": cp_id,
                "connection": session.connection_number,
                "code": close.code,
                "reason": close.reason,
            },
        )

    def _not_connected(self, cp_id: str) -> AdminResponse:
        return error(
            HTTPStatus.NOT_FOUND,
            f"{cp_id} is not connected to this gateway ({self._gateway_id}); each replica "
            "answers for its own charge points",
        )
