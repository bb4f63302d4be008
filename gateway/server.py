"""The gateway's WebSocket server: HTTP policy before the upgrade, then one session per CP."""

from __future__ import annotations

import asyncio
import json
import random
import resource
import ssl
import time
import weakref
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from gateway import closes
from gateway.accept_queue import waiting_to_be_accepted
from gateway.admin import AdminApi, AdminServer
from gateway.admission import (
    REFUSAL_REASONS,
    AdmissionGate,
    Ticket,
    close_offsets,
    default_max_connections,
    is_accept_exhaustion,
    retry_after,
    spread_within,
)
from gateway.closes import Close
from gateway.cp_connection import CpConnection
from gateway.descriptors import probe_forever
from gateway.handshake import (
    HEALTH_PATH,
    METRICS_PATH,
    HandshakeRefused,
    cp_id_from_path,
    select_subprotocol,
)
from gateway.links.base import Link
from gateway.observability import Metrics
from gateway.registry.base import Registry, RegistryUnavailable
from gateway.registry.events import RegistryEventWatcher
from gateway.security import AuthRefused, CpAuthenticator
from gateway.session import Session
from gateway.sessions import SessionTable
from gateway.settings import Settings, UnknownIdResponse
from gateway.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

LIVENESS_PATH = f"{HEALTH_PATH}/live"
ADMIN_PATH = "/cps"


class Gateway:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        link: Link,
        metrics: Metrics,
        registry_events: RegistryEventWatcher | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        authenticator: CpAuthenticator | None = None,
        gateway_id: str = "",
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.link = link
        self.metrics = metrics
        self.registry_events = registry_events
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.sessions = SessionTable()
        self.admin = _admin_server(settings, self.sessions, gateway_id or settings.gateway_id)
        metrics.cps_held_back.set_function(
            lambda: self.sessions.held_back(settings.backpressure_seconds, time.monotonic())
        )
        self.max_connections = settings.max_connections or default_max_connections(
            resource.getrlimit(resource.RLIMIT_NOFILE)[0], settings.link_mode.value
        )
        self.admission = AdmissionGate(self.max_connections, settings.max_handshakes)
        metrics.handshakes_in_flight.set_function(lambda: self.admission.handshaking)
        metrics.accept_queue.set_function(self._waiting_to_be_accepted)
        self._server: Server | None = None
        # When each handshake arrived (wall clock): across replicas the newest connection wins.
        self._handshake_times: weakref.WeakKeyDictionary[ServerConnection, float] = (
            weakref.WeakKeyDictionary()
        )
        self._shutting_down = False
        self._revalidation: asyncio.Task[None] | None = None
        self._tickets: weakref.WeakKeyDictionary[ServerConnection, Ticket] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[asyncio.Task[None]] = set()
        self._descriptor_probe: asyncio.Task[None] | None = None
        self._restore_exception_handler: Callable[[], None] = lambda: None

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful when configured with port 0)."""
        assert self._server is not None, "the gateway is not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def accepting(self) -> bool:
        """Whether charge points are let in: the broker is reachable and no stop is under way."""
        return self.link.ready and not self._shutting_down

    @property
    def ready(self) -> bool:
        """`/health`: accepting, and the registry has read what it answers from.

        While the registry's mirror is still loading, charge points are accepted all the same
        (their ids are looked up one by one); only the load balancer is told to wait."""
        return self.accepting and self.registry.loaded

    async def start(self) -> None:
        if self.authenticator is not None:
            await self.authenticator.start()
        await self.registry.start()
        await self.link.start()
        if self.registry_events is not None:
            await self.registry_events.start(self.thing_deleted)
        settings = self.settings
        self._watch_descriptors(asyncio.get_running_loop())
        self._server = await serve(
            self._handle,
            settings.host,
            settings.port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression="deflate" if settings.compression else None,
            max_size=settings.max_frame_bytes,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            open_timeout=settings.open_timeout,
            close_timeout=settings.close_timeout,
            server_header=None,
            # Thousands of CPs reconnect at once after an outage; the default backlog of 100
            # drops their SYNs and makes them wait for TCP retransmits (1 s, 3 s, 7 s, ...).
            backlog=settings.listen_backlog,
            create_connection=self._accepted,  # type: ignore[arg-type]
        )
        if self.admin is not None:
            await self.admin.start()
        if settings.registry_revalidate_interval > 0:
            self._revalidation = asyncio.create_task(self._revalidate_forever())
        log.info(
            "gateway.listening",
            host=settings.host,
            port=self.port,
            protocols=settings.protocols,
            tls=self.ssl_context is not None,
            security_profile=settings.security_profile.value,
            registry=settings.registry.value,
            link=settings.link_mode.value,
            max_connections=self.max_connections,
        )

    async def stop(self) -> None:
        """Refuse new CPs, close every CP with 1012 so it reconnects elsewhere, then the link."""
        self._shutting_down = True
        if self.admin is not None:
            await self.admin.close()
        if self._revalidation is not None:
            self._revalidation.cancel()
        await cancel_and_wait(self._descriptor_probe)
        self._restore_exception_handler()
        if self.registry_events is not None:
            await self.registry_events.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._close_connections(), self.settings.shutdown_timeout)
            except TimeoutError:
                log.warning("gateway.stop_timeout", seconds=self.settings.shutdown_timeout)
        await self.link.close()
        await self.registry.close()
        if self.authenticator is not None:
            await self.authenticator.close()
        log.info("gateway.stopped")

    async def _close_connections(self) -> None:
        """Stop listening, close every CP with 1012 spread over `GATEWAY_SHUTDOWN_SPREAD`, so a
        replica's CPs do not all land on the others in the same second, then wait for them."""
        assert self._server is not None
        settings = self.settings
        restart = closes.gateway_restarting()
        self._server.server.close()  # no new connections from here on
        connections = list(self._server.connections)
        spread = spread_within(
            settings.shutdown_spread, settings.shutdown_timeout, settings.close_timeout
        )
        log.info("gateway.stopping", connections=len(connections), spread_seconds=spread)
        if spread > 0 and connections:
            loop = asyncio.get_running_loop()
            started = loop.time()
            random.shuffle(connections)
            for connection, offset in zip(
                connections, close_offsets(len(connections), spread), strict=True
            ):
                await asyncio.sleep(max(0.0, started + offset - loop.time()))
                # Not awaited: the close handshake of one CP must not hold back the next.
                task = asyncio.create_task(connection.close(restart.code, restart.reason))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._server.close(close_connections=True, code=restart.code, reason=restart.reason)
        await self._server.wait_closed()

    def _watch_descriptors(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count and log running out of file descriptors (`accept()` failing with EMFILE),
        which the connection limit should prevent: reported by asyncio's loop, and found by a
        probe under uvloop (see `gateway.descriptors`). Other loop errors go to the previous
        handler."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
            name = is_accept_exhaustion(context)
            if name is None:
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)
                return
            self._out_of_descriptors(name, "accept")

        loop.set_exception_handler(handle)
        self._restore_exception_handler = lambda: loop.set_exception_handler(previous)
        self._descriptor_probe = asyncio.create_task(
            probe_forever(lambda name: self._out_of_descriptors(name, "probe"))
        )

    def _out_of_descriptors(self, errno_name: str, detected_by: str) -> None:
        self.metrics.accept_errors.labels(errno=errno_name).inc()
        log.warning(
            "gateway.accept_failed",
            errno=errno_name,
            detected_by=detected_by,
            connections=self.admission.held,
            max_connections=self.max_connections,
            hint="lower GATEWAY_MAX_CONNECTIONS or raise the open-files limit (ulimit -n)",
        )

    # -- before the upgrade ---------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        # A list header may come in several lines (RFC 9110 5.3): read them all, as websockets does.
        if "upgrade" not in ",".join(request.headers.get_all("Connection")).lower():
            ticket = self._tickets.pop(connection, None)
            if ticket is not None:
                self.admission.upgraded(ticket)  # /health, /metrics: not a handshake
            return self._answer_http(connection, request.path)
        self._handshake_times[connection] = time.time()
        try:
            cp_id = cp_id_from_path(request.path, self.settings.path_prefix)
            self._enter(connection)
            await self._admit(cp_id, connection, request)
        except HandshakeRefused as refusal:
            ticket = self._tickets.pop(connection, None)
            if ticket is not None:
                self.admission.upgraded(ticket)  # refused: no longer a handshake in progress
            self.metrics.handshakes.labels(outcome=str(refusal.status.value)).inc()
            details = {"auth": refusal.detail} if isinstance(refusal, AuthRefused) else {}
            log.info(
                "cp.refused",
                path=request.path,
                status=refusal.status.value,
                reason=refusal.reason,
                **details,
            )
            response = connection.respond(refusal.status, refusal.reason + "\n")
            seconds = refusal.retry_after
            if seconds is None and refusal.status is HTTPStatus.SERVICE_UNAVAILABLE:
                seconds = retry_after(1.0, self.settings.retry_after_max, random.uniform)
            if seconds is not None:
                response.headers["Retry-After"] = str(seconds)
            if isinstance(refusal, AuthRefused) and refusal.challenge is not None:
                response.headers["WWW-Authenticate"] = refusal.challenge
            return response
        return None

    def _accepted(self, *args: Any, **kwargs: Any) -> CpConnection:
        """Make the connection of a TCP connection just accepted: a handshake in progress."""
        # Requests websockets cannot parse still get a 400; stalled writes are noticed.
        connection = CpConnection(*args, **kwargs)
        ticket = self.admission.accepted()
        connection.connection_lost_waiter.add_done_callback(
            lambda _: self.admission.release(ticket)
        )
        self._tickets[connection] = ticket
        return connection

    def _enter(self, connection: ServerConnection) -> None:
        """Hold the connection against the limit until its TCP connection is gone, or refuse
        it (503) at once; before anything that waits (password, registry)."""
        if not self.accepting:
            raise HandshakeRefused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the gateway cannot reach its message broker; retry later"
                if not self._shutting_down
                else "the gateway is shutting down; reconnect",
            )
        ticket = self._tickets.get(connection)
        refusal = self.admission.admit(ticket) if ticket is not None else None
        if refusal is not None:
            self.metrics.admissions_refused.labels(reason=refusal.value).inc()
            raise HandshakeRefused(HTTPStatus.SERVICE_UNAVAILABLE, REFUSAL_REASONS[refusal])

    def _waiting_to_be_accepted(self) -> int:
        return waiting_to_be_accepted(self._server.sockets) if self._server is not None else 0

    async def _admit(self, cp_id: str, connection: ServerConnection, request: Request) -> None:
        """Checks that refuse a charge point with an HTTP status, before the upgrade."""
        if self.authenticator is not None:
            # Before the registry, so that ids cannot be probed without credentials. With
            # profile 3 the TLS handshake admits clients without a certificate (for /health and
            # /metrics): `peercert` is then empty, and the check answers 401.
            await self.authenticator.check(
                cp_id,
                request.headers.get_all("Authorization"),
                connection.transport.get_extra_info("peercert"),
                _source_address(connection),
            )
        if self.settings.unknown_id_response is UnknownIdResponse.HTTP_404:
            close = await self._registry_refusal(cp_id)
            if close is not None:
                status = (
                    HTTPStatus.NOT_FOUND
                    if close.code == closes.not_registered(cp_id).code
                    else HTTPStatus.SERVICE_UNAVAILABLE
                )
                raise HandshakeRefused(status, close.reason)

    def _answer_http(self, connection: ServerConnection, path: str) -> Response | None:
        # Not authenticated, with any security profile: health checks have no credentials.
        path = path.partition("?")[0]
        if path == LIVENESS_PATH:
            return _json_response(connection, HTTPStatus.OK, {"status": "alive"})
        if path == HEALTH_PATH:
            status = HTTPStatus.OK if self.ready else HTTPStatus.SERVICE_UNAVAILABLE
            return _json_response(
                connection,
                status,
                {
                    "status": "ready" if status is HTTPStatus.OK else "not ready",
                    "broker": "reachable" if self.link.ready else "unreachable",
                    "registry": "loaded" if self.registry.loaded else "loading",
                    "shutting_down": self._shutting_down,
                    "connections": len(self.sessions),
                },
            )
        if path == METRICS_PATH:
            response = connection.respond(HTTPStatus.OK, self.metrics.render().decode())
            _replace_header(response, "Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            return response
        if path == ADMIN_PATH or path.startswith(f"{ADMIN_PATH}/"):
            return _json_response(
                connection,
                HTTPStatus.NOT_FOUND,
                {"error": "the connected-CP API has its own port (GATEWAY_ADMIN_PORT)"},
            )
        return None  # websockets answers 426 Upgrade Required

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # Returning None completes the handshake without the header; the handler closes 1002.
        selected = select_subprotocol(offered, self.settings.protocols)
        return Subprotocol(selected) if selected is not None else None

    # -- after the upgrade ----------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, CpConnection)  # made by _accepted
        assert connection.request is not None
        ticket = self._tickets.pop(connection, None)
        if ticket is not None:
            self.admission.upgraded(ticket)
        cp_id = cp_id_from_path(connection.request.path, self.settings.path_prefix)
        subprotocol = connection.subprotocol
        refusal: Close | None
        if subprotocol is None:
            refusal = closes.no_subprotocol(self.settings.protocols)
        elif self.settings.unknown_id_response is UnknownIdResponse.CLOSE_1008:
            refusal = await self._registry_refusal(cp_id)
        else:
            refusal = None  # already checked before the upgrade
        if refusal is not None:
            self.metrics.handshakes.labels(outcome=str(refusal.code)).inc()
            self.metrics.closes.labels(code=str(refusal.code)).inc()
            log.info("cp.refused", cp_id=cp_id, code=refusal.code, reason=refusal.reason)
            await connection.close(refusal.code, refusal.reason)
            return
        assert subprotocol is not None
        self.metrics.handshakes.labels(outcome="accepted").inc()
        session = Session(
            connection,
            cp_id,
            subprotocol,
            self.link,
            self.sessions,
            self.metrics,
            self.settings.backpressure_seconds,
            write_timeout=self.settings.write_timeout,
            since=self._handshake_times.pop(connection, None),
        )
        await session.run(takeover_wait=self.settings.close_timeout + 1.0)

    # -- while connected ------------------------------------------------------------------

    async def revoke(self, cp_id: str) -> bool:
        """Close the charge point's session (1008) because it left the registry."""
        session = self.sessions.get(cp_id)
        if session is None:
            return False
        log.info("cp.revoked", cp_id=cp_id)
        await session.close(closes.not_registered(cp_id))
        return True

    async def thing_deleted(self, cp_id: str) -> bool:
        """`cp_id` left the registry (its Thing was deleted): refuse it from now on, close 1008."""
        self.registry.invalidate(cp_id)
        return await self.revoke(cp_id)

    async def revalidate_sessions(self) -> int:
        """Check every connected charge point against the registry; close those now unknown."""
        revoked = 0
        for session in self.sessions:
            try:
                registered = await self.registry.is_registered(session.cp_id)
            except RegistryUnavailable:
                continue  # keep serving known charge points through a registry outage
            if not registered and self.sessions.is_current(session):
                revoked += await self.revoke(session.cp_id)
        return revoked

    async def _revalidate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_revalidate_interval)
            try:
                await self.revalidate_sessions()
            except Exception:
                log.exception("registry.revalidation_failed")

    async def _registry_refusal(self, cp_id: str) -> Close | None:
        try:
            registered = await self.registry.is_registered(cp_id)
        except RegistryUnavailable as exc:
            self.metrics.registry_lookups.labels(result="unavailable").inc()
            log.warning("registry.unavailable", cp_id=cp_id, error=str(exc))
            return closes.registry_unavailable()
        self.metrics.registry_lookups.labels(result="registered" if registered else "unknown").inc()
        return None if registered else closes.not_registered(cp_id)


def _admin_server(
    settings: Settings, sessions: SessionTable, gateway_id: str
) -> AdminServer | None:
    """The connected-CP API, when a token is configured (settings ensure a port then)."""
    if settings.admin_token is None or settings.admin_port is None:
        return None
    api = AdminApi(settings.admin_token.get_secret_value(), sessions, gateway_id)
    return AdminServer(api, settings.admin_host, settings.admin_port)


def _source_address(connection: ServerConnection) -> str | None:
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else None


def _json_response(
    connection: ServerConnection, status: HTTPStatus, body: dict[str, object]
) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    _replace_header(response, "Content-Type", "application/json")
    return response


def _replace_header(response: Response, name: str, value: str) -> None:
    # websockets' Headers is a multidict: assignment alone would add a second value.
    del response.headers[name]
    response.headers[name] = value
