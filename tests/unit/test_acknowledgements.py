"""One timer keeps the deadlines of every operation a broker client has in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.links.connection import Acknowledgements, LinkError

WITHIN = 0.2


def watch() -> tuple[Acknowledgements, list[str]]:
    stalls: list[str] = []
    return Acknowledgements(asyncio.get_running_loop(), WITHIN, stalls.append), stalls


def pending() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


async def test_an_acknowledged_operation_returns_its_result_and_stalls_nothing() -> None:
    acknowledgements, stalls = watch()
    puback = pending()
    asyncio.get_running_loop().call_later(0.01, puback.set_result, "puback")
    assert await acknowledgements.wait(puback, "publish to CP1/in") == "puback"
    await asyncio.sleep(WITHIN * 1.5)  # the timer armed for it fires and finds nothing late
    assert stalls == []


async def test_an_error_from_the_client_is_raised_as_it_is() -> None:
    acknowledgements, stalls = watch()
    puback = pending()
    puback.set_exception(LinkError("connection lost"))
    with pytest.raises(LinkError, match="connection lost"):
        await acknowledgements.wait(puback, "publish to CP1/in")
    assert stalls == []


async def test_a_late_acknowledgement_fails_every_waiting_operation_and_stalls_once() -> None:
    acknowledgements, stalls = watch()
    first = asyncio.create_task(acknowledgements.wait(pending(), "publish to CP1/in"))
    second = asyncio.create_task(acknowledgements.wait(pending(), "subscribe"))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [str(each) for each in results] == [
        "the broker did not acknowledge publish to CP1/in in time",
        "the broker did not acknowledge subscribe in time",
    ]
    assert stalls == [f"no acknowledgement of publish to CP1/in within {WITHIN} s"]


async def test_the_deadline_is_each_operations_own_not_the_first_ones() -> None:
    acknowledgements, stalls = watch()
    loop = asyncio.get_running_loop()
    quick = pending()
    loop.call_later(0.05, quick.set_result, None)
    started = loop.time()
    first = asyncio.create_task(acknowledgements.wait(quick, "publish to CP1/in"))
    await asyncio.sleep(0.1)
    with pytest.raises(LinkError, match="CP2"):
        await acknowledgements.wait(pending(), "publish to CP2/in")
    await first
    # The timer armed for the quick one found it done and waited for the second one's deadline.
    assert loop.time() - started >= 0.1 + WITHIN
    assert stalls == [f"no acknowledgement of publish to CP2/in within {WITHIN} s"]


async def test_a_cancelled_wait_is_forgotten() -> None:
    acknowledgements, stalls = watch()
    waiting = asyncio.create_task(acknowledgements.wait(pending(), "unsubscribe"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(WITHIN * 1.5)
    assert stalls == []


async def test_closing_ends_every_wait_and_stalls_nothing() -> None:
    acknowledgements, stalls = watch()
    waiting = asyncio.create_task(acknowledgements.wait(pending(), "publish to CP1/in"))
    await asyncio.sleep(0)
    acknowledgements.close()
    with pytest.raises(LinkError, match="stopped"):
        await waiting
    await asyncio.sleep(WITHIN * 1.5)
    assert stalls == []
