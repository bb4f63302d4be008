"""A fleet run: ramp the charge points up, keep them going, stop, and summarize."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog
from websockets.typing import Subprotocol

from simulator.dial import SUBPROTOCOLS, client_ssl_context
from simulator.fleet.client import ChargePoint, FleetContext
from simulator.fleet.options import FleetPlan
from simulator.fleet.stats import FleetStats, Summary, format_progress, summarize
from simulator.identity import boot_payload_16, boot_payload_201

log = structlog.get_logger(__name__)

RAMP_TICK = 0.01
"""Charge points due within the same 10 ms start together: fewer timers at high ramp rates."""


async def resolve_host(url: str) -> str | None:
    """Resolve the gateway's name once for the whole fleet instead of once per connection."""
    host = urlsplit(url).hostname
    if host is None:
        return None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=0, proto=0)
    except OSError:
        return None  # let every dial report the resolution error itself
    return str(infos[0][4][0]) if infos else None


def connect_options(plan: FleetPlan, host: str | None) -> dict[str, Any]:
    """Keyword arguments of `websockets.connect`, kept small per connection."""
    options: dict[str, Any] = {
        "subprotocols": [Subprotocol(SUBPROTOCOLS[plan.ocpp_version])],
        "compression": "deflate" if plan.compression else None,
        "open_timeout": plan.open_timeout,
        "ping_interval": plan.ping_interval,
        "ping_timeout": plan.ping_interval,
        "close_timeout": plan.close_timeout,
        "max_size": plan.max_frame_bytes,
        "max_queue": 8,
        "write_limit": 16384,
        "proxy": None,
        "user_agent_header": "ocpp-simulator-fleet",
    }
    context = client_ssl_context(plan.url, plan.tls)
    if context is not None:
        options["ssl"] = context
    if host is not None:
        options["host"] = host
    return options


def boot_payload(plan: FleetPlan) -> str:
    payload = (
        boot_payload_16(plan.identity)
        if plan.ocpp_version == "1.6"
        else boot_payload_201(plan.identity)
    )
    return json.dumps(payload, separators=(",", ":"))


class FirstErrors:
    """Log the first error of each kind in full; later ones are only counted."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, phase: str, cause: str, exc: BaseException) -> None:
        if (phase, cause) in self._seen:
            return
        self._seen.add((phase, cause))
        log.warning(f"fleet.{phase}_error", cause=cause, detail=str(exc) or type(exc).__name__)


def process_usage() -> tuple[float, float]:
    """CPU seconds used and peak resident memory in MB, for this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    max_rss_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return round(usage.ru_utime + usage.ru_stime, 2), round(max_rss_mb, 1)


class FleetRun:
    def __init__(
        self,
        plan: FleetPlan,
        *,
        progress: TextIO | None = None,
        stop: asyncio.Event | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.plan = plan
        self.stats = FleetStats(requested=len(plan.cp_ids))
        self.stop = stop or asyncio.Event()
        self._progress = progress
        self._uniform = uniform
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> Summary:
        loop = asyncio.get_running_loop()
        plan = self.plan
        context = FleetContext(
            plan=plan,
            stats=self.stats,
            dial_slots=asyncio.Semaphore(plan.concurrency_limit),
            connect_options=connect_options(plan, await resolve_host(plan.url)),
            boot_payload=boot_payload(plan),
            uniform=self._uniform,
            on_first_error=FirstErrors(),
        )
        started_at = loop.time()
        reporter = asyncio.create_task(self.report_progress(started_at))
        ramp = asyncio.create_task(self.ramp_up(plan.cp_ids, context))
        stop = asyncio.create_task(self.stop.wait())
        await asyncio.wait({ramp, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not self.stop.is_set():
            log.debug("fleet.ramp_done", count=len(plan.cp_ids), seconds=loop.time() - started_at)
            every_cp = asyncio.create_task(self.all_finished())
            await asyncio.wait(
                {every_cp, stop}, timeout=plan.duration_s, return_when=asyncio.FIRST_COMPLETED
            )
            every_cp.cancel()
        ended_at = loop.time()
        for task in (reporter, ramp, stop):
            task.cancel()
        await self.close_all()
        cpu_s, max_rss_mb = process_usage()
        summary = summarize(
            self.stats,
            started_at=started_at,
            now=ended_at,
            cpu_s=cpu_s,
            max_rss_mb=max_rss_mb,
        )
        return replace(summary, threshold_failures=plan.thresholds.failures(summary))

    async def ramp_up(self, cp_ids: Sequence[str], context: FleetContext) -> None:
        loop = asyncio.get_running_loop()
        per_second = self.plan.ramp_per_s
        began = loop.time()
        for index, cp_id in enumerate(cp_ids):
            if per_second > 0:
                delay = began + index / per_second - loop.time()
                if delay > RAMP_TICK:
                    await asyncio.sleep(delay)
            elif index % 500 == 0:
                await asyncio.sleep(0)  # let the first dials start while the rest are created
            task = asyncio.create_task(ChargePoint(cp_id, context).run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def all_finished(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close_all(self) -> None:
        """Cancel every charge point; each closes its connection (bounded by the close timeout)."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.plan.close_timeout + 5.0)

    async def report_progress(self, started_at: float) -> None:
        if self._progress is None or self.plan.progress_every <= 0:
            return
        loop = asyncio.get_running_loop()
        previous_calls, previous_at = 0, started_at
        while True:
            await asyncio.sleep(self.plan.progress_every)
            now = loop.time()
            calls = self.stats.calls_ok
            per_s = (calls - previous_calls) / (now - previous_at) if now > previous_at else None
            previous_calls, previous_at = calls, now
            print(format_progress(self.stats, now - started_at, per_s), file=self._progress)
            self._progress.flush()


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM end the run early, with a summary, instead of killing it."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)


async def run_fleet(
    plan: FleetPlan, *, progress: TextIO | None = None, stop: asyncio.Event | None = None
) -> Summary:
    """Run `plan` until it is done, its duration is over, or `stop` is set."""
    return await FleetRun(plan, progress=progress, stop=stop).run()
