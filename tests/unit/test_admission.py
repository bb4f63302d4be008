"""Admission policy without I/O: the limits, failed-check rate limits, Retry-After, shutdown."""

from __future__ import annotations

import errno

import pytest
from pydantic import ValidationError

from gateway.admission import (
    AdmissionGate,
    FailureLimiter,
    Refusal,
    Ticket,
    close_offsets,
    default_max_connections,
    is_accept_exhaustion,
    retry_after,
    retry_after_seconds,
    spread_within,
)
from gateway.settings import Settings
from tests.support.clock import FakeClock

# -- the gate ---------------------------------------------------------------------------------


def admitted(gate: AdmissionGate) -> Ticket:
    ticket = gate.accepted()
    assert gate.admit(ticket) is None
    return ticket


def test_the_connection_limit_counts_admissions_before_they_finish() -> None:
    gate = AdmissionGate(max_connections=3, max_handshakes=100)
    for _ in range(3):
        admitted(gate)
    assert gate.admit(gate.accepted()) is Refusal.CONNECTION_LIMIT  # none has finished yet
    assert (gate.held, gate.handshaking) == (3, 4)


def test_a_released_connection_frees_its_place_once() -> None:
    gate = AdmissionGate(max_connections=1, max_handshakes=1)
    ticket = admitted(gate)
    gate.upgraded(ticket)
    gate.upgraded(ticket)
    assert (gate.held, gate.handshaking) == (1, 0)
    refused = gate.accepted()
    assert gate.admit(refused) is Refusal.CONNECTION_LIMIT
    gate.release(refused)  # refused: released without ever being held
    gate.release(ticket)
    gate.release(ticket)
    assert (gate.held, gate.handshaking) == (0, 0)
    admitted(gate)


def test_admitting_twice_holds_once() -> None:
    gate = AdmissionGate(max_connections=5, max_handshakes=5)
    ticket = admitted(gate)
    assert gate.admit(ticket) is None
    assert gate.held == 1


def test_released_before_the_upgrade_also_ends_the_handshake() -> None:
    gate = AdmissionGate(max_connections=5, max_handshakes=5)
    ticket = admitted(gate)
    gate.release(ticket)  # the client went away mid-handshake
    gate.upgraded(ticket)
    assert gate.admit(ticket) is None  # too late to hold anything
    assert (gate.held, gate.handshaking) == (0, 0)


def test_the_storm_threshold_counts_accepted_handshakes_not_yet_upgraded() -> None:
    gate = AdmissionGate(max_connections=100, max_handshakes=2)
    first, second, third = gate.accepted(), gate.accepted(), gate.accepted()
    # Three accepted: whichever is read first meets three handshakes in progress.
    assert gate.admit(first) is Refusal.STORM
    gate.upgraded(first)  # its 503 is sent
    assert gate.admit(second) is None
    assert gate.admit(third) is None
    gate.upgraded(second)  # connected: still held, no longer handshaking
    assert gate.admit(gate.accepted()) is None
    assert (gate.held, gate.handshaking) == (3, 2)


def test_the_connection_limit_is_checked_before_the_storm_threshold() -> None:
    gate = AdmissionGate(max_connections=1, max_handshakes=1)
    admitted(gate)
    assert gate.admit(gate.accepted()) is Refusal.CONNECTION_LIMIT


@pytest.mark.parametrize(("connections", "handshakes"), [(0, 1), (1, 0)])
def test_limits_below_one_are_refused(connections: int, handshakes: int) -> None:
    with pytest.raises(ValueError, match="limits must be >= 1"):
        AdmissionGate(connections, handshakes)


@pytest.mark.parametrize(
    ("nofile", "mode", "expected"),
    [
        (20_000, "per-cp", 9_500),  # 1,000 kept free, 2 fds per CP
        (20_000, "shared", 19_000),
        (1_024, "per-cp", 462),  # at least 100 kept free
        (150, "shared", 50),
        (50, "per-cp", 1),
        (-1, "shared", 996_147),  # unlimited: as if 2**20
    ],
)
def test_default_max_connections_follows_the_open_files_limit(
    nofile: int, mode: str, expected: int
) -> None:
    assert default_max_connections(nofile, mode) == expected


# -- failed password checks -------------------------------------------------------------------


def test_failures_are_allowed_up_to_the_allowance_then_refilled_over_the_window() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, 60.0, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("CP1") is None
        limiter.failed("CP1")
    assert limiter.retry_after("CP1") == pytest.approx(20.0)
    assert limiter.retry_after("CP2") is None
    clock.advance(10)
    assert limiter.retry_after("CP1") == pytest.approx(10.0)
    clock.advance(10)
    assert limiter.retry_after("CP1") is None  # one failure allowed again
    limiter.failed("CP1")
    assert limiter.retry_after("CP1") == pytest.approx(20.0)


def test_a_success_forgives_earlier_failures() -> None:
    limiter = FailureLimiter(1, 60.0, clock=FakeClock())
    limiter.failed("CP1")
    assert limiter.retry_after("CP1") is not None
    limiter.succeeded("CP1")
    assert limiter.retry_after("CP1") is None


def test_failure_keys_are_bounded_oldest_first() -> None:
    limiter = FailureLimiter(1, 60.0, clock=FakeClock(), max_keys=2)
    for key in ("a", "b", "c"):
        limiter.failed(key)
    assert len(limiter) == 2
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("c") is not None


def test_an_allowance_of_zero_turns_the_limiter_off() -> None:
    limiter = FailureLimiter(0, 60.0)
    for _ in range(100):
        limiter.failed("CP1")
    assert limiter.retry_after("CP1") is None and not limiter.enabled and len(limiter) == 0


def test_bad_limiter_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="allowance must be >= 0 and window > 0"):
        FailureLimiter(-1, 60.0)
    with pytest.raises(ValueError, match="window > 0"):
        FailureLimiter(1, 0.0)


# -- Retry-After and the shutdown spread ------------------------------------------------------


def test_retry_after_is_whole_seconds_drawn_from_the_range() -> None:
    assert retry_after(1.0, 10.0, lambda low, high: low) == 1
    assert retry_after(1.0, 10.0, lambda low, high: high) == 10
    assert retry_after(1.0, 10.0, lambda low, high: 4.4) == 4
    assert retry_after(0.0, 0.2, lambda low, high: high) == 1  # never 0
    assert retry_after(5.0, 2.0, lambda low, high: high) == 5  # high below low: low


def test_retry_after_seconds_rounds_up() -> None:
    assert [retry_after_seconds(s) for s in (0.0, 0.1, 1.0, 29.2)] == [1, 1, 1, 30]


def test_close_offsets_spread_evenly_with_jitter_within_the_window() -> None:
    offsets = close_offsets(4, 2.0, lambda low, high: high / 2)
    assert offsets == [0.25, 0.75, 1.25, 1.75]
    assert close_offsets(4, 2.0, lambda low, high: high)[-1] == 2.0
    assert close_offsets(3, 0.0) == [0.0, 0.0, 0.0]
    assert close_offsets(0, 5.0) == []


def test_the_spread_leaves_time_for_the_last_close_within_the_shutdown_timeout() -> None:
    assert spread_within(2.0, shutdown_timeout=10.0, close_timeout=5.0) == 2.0
    assert spread_within(8.0, shutdown_timeout=10.0, close_timeout=5.0) == 5.0
    assert spread_within(8.0, shutdown_timeout=3.0, close_timeout=5.0) == 0.0


# -- accept() out of file descriptors ---------------------------------------------------------


def test_accept_exhaustion_is_recognised_from_the_loop_context() -> None:
    emfile = OSError(errno.EMFILE, "Too many open files")
    asyncio_context = {"message": "socket.accept() out of system resource", "exception": emfile}
    assert is_accept_exhaustion(asyncio_context) == "EMFILE"
    enfile = OSError(errno.ENFILE, "Too many open files in system")
    uvloop_context = {"message": "Fatal error on server TCPServer", "exception": enfile}
    assert is_accept_exhaustion(uvloop_context) == "ENFILE"
    assert is_accept_exhaustion({"message": "socket.accept() out of system resource"}) is None
    other = {"message": "Task exception was never retrieved", "exception": emfile}
    assert is_accept_exhaustion(other) is None
    refused = {"message": "socket.accept() failed", "exception": ConnectionRefusedError()}
    assert is_accept_exhaustion(refused) is None


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_connections", 0),
        ("max_handshakes", 0),
        ("retry_after_max", 0.5),
        ("shutdown_spread", -1),
        ("registry_timeout", 0),
        ("auth_failures_per_id", -1),
        ("auth_failure_window", 0),
    ],
)
def test_admission_settings_refuse_values_out_of_range(name: str, value: float) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(_env_file=None, **{name: value})


def test_the_connection_limit_defaults_to_none_meaning_derived() -> None:
    settings = Settings(_env_file=None)
    assert settings.max_connections is None
    assert (settings.max_handshakes, settings.shutdown_spread) == (500, 2.0)
