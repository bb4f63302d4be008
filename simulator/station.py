"""Run one simulated charge point: dial, operate, and re-dial or exit when the connection ends."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import HeadersLike
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from simulator.backoff import RetryBackOff
from simulator.behaviour import StationBehaviour, console
from simulator.config import StationConfig, StationState
from simulator.device_model import (
    RETRY_RANDOM_RANGE,
    RETRY_REPEAT_TIMES,
    RETRY_WAIT_MINIMUM,
    format_number,
)
from simulator.dial import (
    SUBPROTOCOLS,
    basic_auth_header,
    client_ssl_context,
    describe_dial_error,
    station_url,
)
from simulator.v16 import Station16
from simulator.v201 import Station21, Station201

CLOSE_TIMEOUT = 3.0
WORKER_GRACE = 0.2
CANCEL_RETRY = 0.5

EXIT_OK = 0
EXIT_FAILED = 1


class End(enum.Enum):
    """How one connection ended."""

    STOPPED = "stopped"  # Ctrl-C or SIGTERM
    DONE = "done"  # every finite job (--heartbeats, --scenario) finished
    REBOOT = "reboot"  # the CSMS reset the station
    LOST = "lost"  # refused, closed by the peer, or failed


@dataclass(frozen=True)
class Outcome:
    end: End
    answered: bool = False
    """Whether the CSMS answered anything on this connection (resets the back-off)."""


def build_station(
    config: StationConfig, state: StationState, connection: ClientConnection
) -> StationBehaviour:
    if config.ocpp_version == "1.6":
        return Station16(config, state, connection)
    if config.ocpp_version == "2.1":
        return Station21(config, state, connection)
    return Station201(config, state, connection)


async def open_connection(config: StationConfig) -> ClientConnection:
    headers: HeadersLike = {}
    if config.password is not None:
        headers = {"Authorization": basic_auth_header(config.cp_id, config.password)}
    return await connect(
        station_url(config.url, config.cp_id),
        subprotocols=[Subprotocol(SUBPROTOCOLS[config.ocpp_version])],
        additional_headers=headers,
        ssl=client_ssl_context(config.url, config.tls),
        compression="deflate" if config.compression else None,
        open_timeout=config.open_timeout,
        close_timeout=CLOSE_TIMEOUT,
    )


async def run_connection(
    config: StationConfig, state: StationState, stop: asyncio.Event
) -> Outcome:
    """Dial once and operate until the connection ends, one way or another."""
    url = station_url(config.url, config.cp_id)
    dial = asyncio.create_task(open_connection(config), name="dial")
    stopped = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({dial, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not dial.done():
        dial.cancel()
        await asyncio.gather(dial, return_exceptions=True)
        return Outcome(End.STOPPED)
    exc = dial.exception()
    if exc is not None:
        stopped.cancel()
        if not isinstance(exc, (OSError, TimeoutError, WebSocketException)):
            raise exc
        console.error("%s: %s", config.cp_id, describe_dial_error(exc, url, config.open_timeout))
        return Outcome(End.LOST)
    connection = dial.result()
    expected = SUBPROTOCOLS[config.ocpp_version]
    if connection.subprotocol != expected:
        console.warning(
            "%s: the central system did not agree to the subprotocol %s", config.cp_id, expected
        )
    station = build_station(config, state, connection)
    worker = asyncio.create_task(station.operate(), name="operate")
    listener = asyncio.create_task(station.start(), name="listen")
    rebooting = asyncio.create_task(station.reboot_requested.wait(), name="reboot")
    tasks = {listener, worker, stopped, rebooting}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if listener in done and not worker.done():
            # A call being prepared (the `ocpp` library validates it in a thread) still goes
            # out and is logged, then fails: a refused CP shows its BootNotification, then why.
            await asyncio.wait({worker}, timeout=WORKER_GRACE)
    finally:
        await cancel_until_done(tasks)
        await station.stop_background()
        await connection.close()
    answered = station.answered_any
    if stopped in done:
        return Outcome(End.STOPPED, answered)
    if rebooting in done:
        return Outcome(End.REBOOT, answered)
    if worker in done and worker.exception() is None:
        return Outcome(End.DONE, answered)
    report_lost_connection(config.cp_id, listener, worker)
    return Outcome(End.LOST, answered)


async def cancel_until_done(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them, cancelling again any that swallowed it.

    Python 3.11's `asyncio.wait_for` loses a cancellation that arrives just as what it waits
    for completes (the `ocpp` library waits for answers that way), and the heartbeat loop
    would then go on with Ctrl-C unheard.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY)
    for task in tasks:  # retrieve outcomes so none is reported as never retrieved
        if not task.cancelled():
            task.exception()


def report_lost_connection(
    cp_id: str, listener: asyncio.Task[None], worker: asyncio.Task[None]
) -> None:
    """One ERROR line, e.g. `CP2: received 1008 (policy violation) ...; then sent 1008 ...`."""
    failures = [
        task.exception()
        for task in (listener, worker)
        if task.done() and not task.cancelled() and task.exception() is not None
    ]
    closed = [exc for exc in failures if isinstance(exc, ConnectionClosed)]
    if closed:
        console.error("%s: %s", cp_id, closed[0])
    elif failures:
        exc = failures[0]
        console.error("%s: %s: %s", cp_id, type(exc).__name__, exc)
    else:
        console.error("%s: the connection ended", cp_id)


def retry_settings(state: StationState) -> RetryBackOff:
    """The back-off as it stands in the device model (a CSMS may have changed it)."""
    model = state.model
    return RetryBackOff(
        wait_minimum=model.number(RETRY_WAIT_MINIMUM),
        random_range=model.number(RETRY_RANDOM_RANGE),
        repeat_times=int(model.number(RETRY_REPEAT_TIMES)),
    )


async def run_station(
    config: StationConfig,
    stop: asyncio.Event,
    uniform: Callable[[float, float], float] = random.uniform,
) -> int:
    """Dial and operate until stopped; the exit status of the simulator."""
    state = StationState.initial(config)
    failed_attempts = 0
    while True:
        outcome = await run_connection(config, state, stop)
        if outcome.end in (End.STOPPED, End.DONE):
            return EXIT_OK
        if outcome.end is End.REBOOT:
            state.boot_accepted = False
            state.boot_reason = "RemoteReset"
            failed_attempts = 0
            continue
        if config.reconnect is None:
            return EXIT_FAILED
        if outcome.answered:
            failed_attempts = 0
        backoff = retry_settings(state)
        delay = backoff.fixed_part(failed_attempts) + uniform(0.0, backoff.random_range)
        failed_attempts += 1
        console.info(
            "%s: reconnecting in %s s (attempt %d)",
            config.cp_id,
            format_number(round(delay, 2)),
            failed_attempts,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return EXIT_OK


def install_stop_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM close the connection cleanly instead of raising in the middle."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows: KeyboardInterrupt then
            loop.add_signal_handler(signum, stop.set)


async def simulate(config: StationConfig) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    return await run_station(config, stop)
