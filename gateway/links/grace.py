"""Publishing that rides out a short broker outage: frames wait, in order, up to a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gateway.links.base import BrokerUnavailable
from gateway.links.connection import BrokerRefused, LinkError, NotConnected

RETRY_PAUSE = 0.05


async def publish_within_grace(
    send: Callable[[], Awaitable[None]],
    connected: asyncio.Event,
    ended: asyncio.Event,
    grace: float,
    retry_on: tuple[type[Exception], ...] = (LinkError,),
    refused: tuple[type[Exception], ...] = (BrokerRefused,),
    on_resend: Callable[[], None] | None = None,
) -> None:
    """Send once the link is up, retrying the same frame until `grace` seconds have passed.

    `refused` errors (the broker said no; retrying won't help) end it at once. A retry after a
    failed attempt may deliver the frame twice (the broker may have had it): QoS 1 is
    at-least-once, and `on_resend` is called for each such retry so duplicates can be counted.
    """
    failed_before = False
    deadline: float | None = None  # the grace period starts with the first wait or failure
    while True:
        if ended.is_set():
            raise BrokerUnavailable("the broker channel has ended")
        if not connected.is_set():
            deadline = deadline or time.monotonic() + grace
            await wait_for_either(connected, ended, deadline)
            continue
        if failed_before and on_resend is not None:
            on_resend()
        try:
            await send()  # nearly every frame: the link is up and the first attempt succeeds
            return
        except refused as exc:
            raise BrokerUnavailable(str(exc)) from exc
        except retry_on as exc:
            failed_before = not isinstance(exc, NotConnected)
            if deadline is None:  # the broker is going away: wait for it, within the grace
                deadline = time.monotonic() + grace
                continue
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(f"cannot publish: {exc}") from exc
            # The link notices a lost connection within milliseconds and reconnects.
            await asyncio.sleep(RETRY_PAUSE)


async def wait_for_either(first: asyncio.Event, second: asyncio.Event, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BrokerUnavailable("the broker did not come back within the grace period")
    waiters = {asyncio.create_task(first.wait()), asyncio.create_task(second.wait())}
    try:
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
