"""Admission under storms and abuse, with real clients against real gateways: the connection
limit under a slow registry, the storm threshold, limits on failed password checks, the
open-files limit, and the spread of 1012 closes on SIGTERM.

Admission does not depend on the broker link, so these tests run with the default link only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response

from gateway.cli import build_gateway
from gateway.security import hash_password, set_password_line
from gateway.server import Gateway
from simulator.backoff import RetryBackOff
from simulator.fleet.options import FleetPlan
from simulator.fleet.runner import run_fleet
from tests.support import gateway as gateway_support
from tests.support.gateway import GatewayProcess, running_gateway
from tests.support.mosquitto import MosquittoProcess
from tests.support.processor import running_processor
from tests.support.waiting import until

pytestmark = pytest.mark.integration

PASSWORD = "a long random password"


class GatedRegistry:
    """A registry that answers only once `gate` is set: a registry as slow as a test wants."""

    loaded = True

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0

    async def start(self) -> None:
        pass

    async def is_registered(self, cp_id: str) -> bool:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        return True

    def invalidate(self, cp_id: str) -> None:
        pass

    async def close(self) -> None:
        self.gate.set()


@contextlib.asynccontextmanager
async def gated_gateway(broker_url: str, **overrides: Any) -> AsyncIterator[Gateway]:
    gateway = build_gateway(
        gateway_support.test_settings(broker_url, registry_revalidate_interval=0, **overrides)
    )
    gateway.registry = GatedRegistry()
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


class Dialled:
    """The outcome of one dial: an open connection, or the HTTP refusal."""

    def __init__(self) -> None:
        self.connection: ClientConnection | None = None
        self.refusal: Response | None = None

    @property
    def status(self) -> int:
        return 101 if self.connection is not None else self.refusal.status_code  # type: ignore[union-attr]


async def dial(url: str, outcome: Dialled, **options: Any) -> None:
    try:
        outcome.connection = await connect(url, subprotocols=["ocpp2.0.1"], **options)  # type: ignore[list-item]
    except InvalidStatus as exc:
        outcome.refusal = exc.response


def url(gateway: Gateway, cp_id: str) -> str:
    return f"ws://127.0.0.1:{gateway.port}/{cp_id}"


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in the metrics")


@pytest.mark.parametrize("unknown_id_response", ["close-1008", "http-404"])
async def test_the_connection_limit_holds_while_the_registry_is_slow(
    broker: MosquittoProcess, unknown_id_response: str
) -> None:
    async with gated_gateway(
        broker.url, max_connections=20, unknown_id_response=unknown_id_response
    ) as gw:
        registry = gw.registry
        assert isinstance(registry, GatedRegistry)
        outcomes = [Dialled() for _ in range(100)]
        dials = [asyncio.create_task(dial(url(gw, f"CP-{n}"), o)) for n, o in enumerate(outcomes)]
        refused = lambda: sum(o.refusal is not None for o in outcomes)  # noqa: E731
        await until(lambda: registry.waiting == 20 and refused() == 80, what="20 in, 80 out")
        assert gw.admission.held == 20
        registry.gate.set()
        await asyncio.gather(*dials)
        statuses = [o.status for o in outcomes]
        assert (statuses.count(101), statuses.count(503)) == (20, 80)
        refusal = next(o.refusal for o in outcomes if o.refusal is not None)
        assert refusal.body == b"the gateway is at its connection limit; retry later\n"
        assert 1 <= int(refusal.headers["Retry-After"]) <= 10
        await until(lambda: len(gw.sessions) == 20, what="20 sessions")
        text = gw.metrics.render().decode()
        assert (
            metric(text, 'ocpp_gateway_admissions_refused_total{reason="connection_limit"}') == 80
        )
        for outcome in outcomes:
            if outcome.connection is not None:
                await outcome.connection.close()
        await until(lambda: gw.admission.held == 0, what="every place freed")


async def test_past_the_storm_threshold_handshakes_get_503_at_once(
    broker: MosquittoProcess,
) -> None:
    async with gated_gateway(
        broker.url, unknown_id_response="http-404", max_handshakes=5, retry_after_max=3
    ) as gw:
        registry = gw.registry
        assert isinstance(registry, GatedRegistry)
        outcomes = [Dialled() for _ in range(12)]
        dials = [asyncio.create_task(dial(url(gw, f"CP-{n}"), o)) for n, o in enumerate(outcomes)]
        await until(
            lambda: registry.waiting == 5 and sum(o.refusal is not None for o in outcomes) == 7,
            what="5 handshakes waiting, 7 refused",
        )
        assert gw.admission.handshaking == 5
        retry_afters = set()
        for outcome in outcomes:
            if outcome.refusal is not None:
                assert outcome.refusal.status_code == 503
                assert b"too many handshakes in progress" in outcome.refusal.body
                retry_afters.add(int(outcome.refusal.headers["Retry-After"]))
        assert retry_afters <= {1, 2, 3}
        registry.gate.set()
        await asyncio.gather(*dials)
        assert [o.status for o in outcomes].count(101) == 5
        assert gw.admission.handshaking == 0
        # Connected CPs are no longer handshakes in progress: new ones are admitted again.
        again = Dialled()
        await dial(url(gw, "CP-late"), again)
        assert again.status == 101
        text = gw.metrics.render().decode()
        assert metric(text, 'ocpp_gateway_admissions_refused_total{reason="storm"}') == 7
        for outcome in [*outcomes, again]:
            if outcome.connection is not None:
                await outcome.connection.close()


async def test_connections_in_the_kernels_accept_queue_are_counted(
    broker: MosquittoProcess,
) -> None:
    async with gated_gateway(broker.url) as gw:
        # Connected without yielding to the event loop: the gateway has not accepted them yet,
        # as in a storm that keeps the loop busy. The kernel has completed their TCP handshakes.
        waiting = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(3)]
        try:
            text = gw.metrics.render().decode()
            assert metric(text, "ocpp_gateway_accept_queue") == 3
            await until(lambda: gw.admission.handshaking == 3, what="the 3 accepted")
            text = gw.metrics.render().decode()
            assert metric(text, "ocpp_gateway_accept_queue") == 0
        finally:
            for sock in waiting:
                sock.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_failed_password_checks_are_limited_per_id_and_per_address(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    path = tmp_path / "passwords.txt"
    text = ""
    for cp_id in ("CP1", "CP2"):
        text = set_password_line(text, cp_id, hash_password(f"{cp_id} {PASSWORD}".encode()))
    path.write_text(text)
    async with gated_gateway(
        broker.url,
        security_profile=1,
        password_file=path,
        auth_failures_per_id=2,
        auth_failures_per_address=3,
    ) as gw:
        assert isinstance(gw.registry, GatedRegistry)
        gw.registry.gate.set()

        async def attempt(cp_id: str, password: str, source: str = "127.0.0.1") -> Dialled:
            outcome = Dialled()
            await dial(
                url(gw, cp_id), outcome, additional_headers=basic(cp_id, password),
                local_addr=(source, 0),
            )  # fmt: skip
            if outcome.connection is not None:
                await outcome.connection.close()
            return outcome

        assert [(await attempt("CP1", "guess")).status for _ in range(2)] == [401, 401]
        limited = await attempt("CP1", f"CP1 {PASSWORD}")  # right, but too soon
        assert limited.status == 429
        assert limited.refusal is not None
        assert limited.refusal.body.startswith(b"too many failed password checks for charge po")
        assert 1 <= int(limited.refusal.headers["Retry-After"]) <= 30
        # A third failure from 127.0.0.1 uses up the address's allowance: even CP2 is refused.
        assert (await attempt("CP2", "guess")).status == 401
        from_there = await attempt("CP2", f"CP2 {PASSWORD}")
        assert from_there.status == 429
        assert from_there.refusal is not None
        assert b"from this address" in from_there.refusal.body
        # Another address is not held back.
        assert (await attempt("CP2", f"CP2 {PASSWORD}", source="127.0.0.2")).status == 101
        text = gw.metrics.render().decode()
        assert metric(text, "ocpp_gateway_auth_wrong_passwords_total") == 3
        assert metric(text, "ocpp_gateway_auth_rate_limited_id_total") == 1
        assert metric(text, "ocpp_gateway_auth_rate_limited_address_total") == 1
        assert metric(text, 'ocpp_gateway_handshakes_total{outcome="429"}') == 2


async def hold(port: int, count: int, start: int = 0) -> list[Dialled]:
    outcomes = [Dialled() for _ in range(count)]
    await asyncio.gather(
        *(
            dial(f"ws://127.0.0.1:{port}/CP-{start + n}", outcome, open_timeout=20)
            for n, outcome in enumerate(outcomes)
        )
    )
    return outcomes


def log_events(process: GatewayProcess, event: str) -> list[dict[str, Any]]:
    found = []
    for line in process.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
    return found


async def test_the_default_limit_follows_the_open_files_limit_and_refuses_before_emfile(
    broker: MosquittoProcess,
) -> None:
    # 300 files, per-CP link (2 descriptors per CP), 100 kept free: room for 100 CPs.
    process = GatewayProcess(broker.url, open_files=300, GATEWAY_REGISTRY="allow-all")
    process.start()
    try:
        assert log_events(process, "gateway.listening")[0]["max_connections"] == 100
        outcomes = await hold(process.port, 130)
        statuses = [o.status for o in outcomes]
        assert (statuses.count(101), statuses.count(503)) == (100, 30)
        text = await asyncio.to_thread(process.metrics)
        assert "ocpp_gateway_accept_errors_total{" not in text
        assert not log_events(process, "gateway.accept_failed")
        for outcome in outcomes:
            if outcome.connection is not None:
                await outcome.connection.close()
    finally:
        process.stop()


async def test_emfile_on_accept_is_counted_and_logged(broker: MosquittoProcess) -> None:
    # A limit set above what the open-files limit allows: accept() runs out of descriptors.
    process = GatewayProcess(
        broker.url,
        open_files=150,
        GATEWAY_REGISTRY="allow-all",
        GATEWAY_LINK_MODE="shared",
        GATEWAY_MAX_CONNECTIONS="1000",
    )
    process.start()
    try:
        outcomes = [Dialled() for _ in range(200)]
        dials = [
            asyncio.create_task(dial(f"ws://127.0.0.1:{process.port}/CP-{n}", o, open_timeout=30))
            for n, o in enumerate(outcomes)
        ]
        await until(
            lambda: bool(log_events(process, "gateway.accept_failed")),
            timeout=30,
            what="accept() failing with EMFILE",
        )
        failed = log_events(process, "gateway.accept_failed")[0]
        assert failed["errno"] == "EMFILE"
        assert "GATEWAY_MAX_CONNECTIONS" in failed["hint"]
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        for outcome in outcomes:
            if outcome.connection is not None:
                await outcome.connection.close()

        async def counted() -> bool:
            try:
                text = await asyncio.to_thread(process.metrics)
            except OSError:
                return False
            return 'ocpp_gateway_accept_errors_total{errno="EMFILE"}' in text

        for _ in range(100):  # the listener recovers once descriptors are free again
            if await counted():
                break
            await asyncio.sleep(0.1)
        assert await counted()
    finally:
        process.stop()


async def test_sigterm_spreads_the_1012_closes_and_still_exits_in_time(
    broker: MosquittoProcess,
) -> None:
    process = GatewayProcess(
        broker.url,
        GATEWAY_REGISTRY="allow-all",
        GATEWAY_SHUTDOWN_SPREAD="1",
        GATEWAY_SHUTDOWN_TIMEOUT="5",
        GATEWAY_CLOSE_TIMEOUT="2",
    )
    process.start()
    try:
        outcomes = await hold(process.port, 10)
        connections = [o.connection for o in outcomes if o.connection is not None]
        assert len(connections) == 10
        closes: list[tuple[int | None, str | None]] = []

        async def closed(connection: ClientConnection) -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await connection.recv()
            closes.append((connection.close_code, connection.close_reason))

        waiting = [asyncio.create_task(closed(c)) for c in connections]
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*waiting)
        assert {code for code, _ in closes} == {1012}
        assert await asyncio.to_thread(process.process.wait, 15) == 0
        stopping = log_events(process, "gateway.stopping")[0]
        assert (stopping["connections"], stopping["spread_seconds"]) == (10, 1.0)
    finally:
        process.stop()


async def test_the_fleet_comes_back_when_retry_after_says_not_after_its_back_off(
    broker: MosquittoProcess,
) -> None:
    # One place, three CPs, a back-off of 10 minutes: only Retry-After (1 s) brings them back.
    async with (
        running_processor(broker.url),
        running_gateway(
            broker.url, registry="allow-all", max_connections=1, retry_after_max=1
        ) as gw,
    ):
        summary = await run_fleet(
            FleetPlan(
                url=f"ws://127.0.0.1:{gw.port}",
                cp_ids=["FLEET1", "FLEET2", "FLEET3"],
                ramp_per_s=0.0,
                mode="closed",
                calls_per_cp=1,
                progress_every=0.0,
                close_timeout=1.0,
                reconnect=RetryBackOff(wait_minimum=600.0, random_range=0.0),
            )
        )
    assert summary.boots_accepted == 3
    assert summary.connect_errors.get("http_503", 0) >= 2
