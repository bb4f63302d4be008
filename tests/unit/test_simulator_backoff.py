"""The OCPP reconnect back-off: doubling, cap, random share, reset."""

from __future__ import annotations

import pytest

from simulator.backoff import ReconnectDelays, RetryBackOff


def test_fixed_part_doubles_then_stays_after_repeat_times() -> None:
    backoff = RetryBackOff(wait_minimum=2.0, random_range=0.0, repeat_times=3)
    assert [backoff.fixed_part(n) for n in range(6)] == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_zero_repeat_times_never_doubles() -> None:
    backoff = RetryBackOff(wait_minimum=5.0, random_range=0.0, repeat_times=0)
    assert [backoff.fixed_part(n) for n in range(3)] == [5.0, 5.0, 5.0]


def test_every_delay_adds_a_fresh_random_share_within_the_range() -> None:
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high  # the largest share the range allows

    delays = ReconnectDelays(RetryBackOff(1.0, 3.0, 2), uniform=uniform)
    assert [delays.next_delay() for _ in range(4)] == [4.0, 5.0, 7.0, 7.0]
    assert asked == [(0.0, 3.0)] * 4


def test_reset_starts_again_from_the_minimum() -> None:
    delays = ReconnectDelays(RetryBackOff(1.0, 0.0, 5), uniform=lambda low, high: 0.0)
    delays.next_delay()
    delays.next_delay()
    assert delays.attempts == 2
    delays.reset()
    assert delays.attempts == 0
    assert delays.next_delay() == 1.0


def test_real_random_share_stays_in_range() -> None:
    delays = ReconnectDelays(RetryBackOff(1.0, 0.5, 0))
    for _ in range(100):
        assert 1.0 <= delays.next_delay() <= 1.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"wait_minimum": -1.0}, "RetryBackOffWaitMinimum must be >= 0"),
        ({"random_range": -0.1}, "RetryBackOffRandomRange must be >= 0"),
        ({"repeat_times": -2}, "RetryBackOffRepeatTimes must be >= 0"),
    ],
)
def test_negative_settings_are_refused(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryBackOff(**settings)  # type: ignore[arg-type]
