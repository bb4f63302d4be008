"""The hand-off from CRT threads to the asyncio loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from gateway.links.loop_inbox import LoopInbox


async def test_calls_posted_from_threads_run_on_the_loop_in_order() -> None:
    loop = asyncio.get_running_loop()
    inbox = LoopInbox(loop)
    seen: list[tuple[int, bool]] = []
    done = asyncio.Event()

    def record(number: int) -> None:
        seen.append((number, threading.current_thread() is threading.main_thread()))
        if number == 999:
            done.set()

    def produce() -> None:
        for number in range(1000):
            inbox.post(record, number)

    worker = threading.Thread(target=produce)
    worker.start()
    await asyncio.wait_for(done.wait(), 5)
    worker.join()
    assert [number for number, _ in seen] == list(range(1000))
    assert all(on_loop_thread for _, on_loop_thread in seen)


async def test_calls_posted_while_the_loop_is_busy_run_in_one_wake_up() -> None:
    loop = asyncio.get_running_loop()
    inbox = LoopInbox(loop)
    wake_ups: list[int] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        wake_ups.append(1)
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        seen: list[int] = []
        worker = threading.Thread(target=lambda: [inbox.post(seen.append, n) for n in range(50)])
        worker.start()
        worker.join()  # the loop has not run in between: all 50 wait for one wake-up
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        del loop.call_soon_threadsafe
    assert seen == list(range(50))
    assert len(wake_ups) == 1


async def test_a_failing_call_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    inbox = LoopInbox(loop)
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    seen: list[str] = []

    def fail() -> None:
        raise ValueError("boom")

    inbox.post(seen.append, "before")
    inbox.post(fail)
    inbox.post(seen.append, "after")
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert seen == ["before", "after"]
    assert isinstance(reported[0]["exception"], ValueError)


def test_posting_to_a_closed_loop_is_dropped_quietly() -> None:
    loop = asyncio.new_event_loop()
    inbox = LoopInbox(loop)
    loop.close()
    inbox.post(print, "never")  # no exception: the gateway has stopped
    inbox.post(print, "never again")
