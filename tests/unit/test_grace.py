"""Publishing within the broker grace period: first attempt, retries, refusals, deadline."""

from __future__ import annotations

import asyncio

import pytest

from gateway.links.base import BrokerUnavailable
from gateway.links.grace import publish_within_grace


class Dropped(Exception):
    pass


class Refused(Exception):
    pass


def events(connected: bool) -> tuple[asyncio.Event, asyncio.Event]:
    up, ended = asyncio.Event(), asyncio.Event()
    if connected:
        up.set()
    return up, ended


async def test_a_failed_attempt_is_retried_until_it_goes_through() -> None:
    up, ended = events(connected=True)
    outcomes: list[Exception | None] = [Dropped("lost"), Dropped("lost"), None]

    async def send() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    await publish_within_grace(send, up, ended, grace=5, retry_on=(Dropped,))
    assert outcomes == []


async def test_a_refusal_ends_at_once() -> None:
    up, ended = events(connected=True)
    attempts = 0

    async def send() -> None:
        nonlocal attempts
        attempts += 1
        raise Refused("NOT_AUTHORIZED")

    with pytest.raises(BrokerUnavailable, match="NOT_AUTHORIZED"):
        await publish_within_grace(
            send, up, ended, grace=5, retry_on=(Exception,), refused=(Refused,)
        )
    assert attempts == 1


async def test_the_frame_waits_for_the_link_and_gives_up_after_the_grace() -> None:
    up, ended = events(connected=False)
    sent: list[str] = []

    async def send() -> None:
        sent.append("frame")

    waiting = asyncio.create_task(publish_within_grace(send, up, ended, 5, (Dropped,)))
    await asyncio.sleep(0.05)
    assert sent == []
    up.set()
    await waiting
    assert sent == ["frame"]

    up.clear()
    with pytest.raises(BrokerUnavailable, match="grace period"):
        await publish_within_grace(send, up, ended, 0.05, (Dropped,))
    assert sent == ["frame"]
