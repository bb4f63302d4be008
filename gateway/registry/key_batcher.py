"""Lookups of single keys made within a few milliseconds of each other, sent as one request.

When thousands of charge points unknown to the registry's mirror dial at once (a cold start, a
batch of new Things), one `GetItem` each would spend a round trip and a pool thread per id; a
`BatchGetItem` answers up to 100 keys in one. The batcher collects the keys asked for during
`delay` seconds (or until `max_keys` are waiting) and hands them to `lookup_many` together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from gateway.registry.base import RegistryUnavailable

K = TypeVar("K", bound=Hashable)

DEFAULT_DELAY = 0.005


class KeyBatcher(Generic[K]):
    """`lookup(key)` answers through `lookup_many(keys) -> {key: registered}`, batched.

    A key that `lookup_many` leaves out of its answer (e.g. DynamoDB's unprocessed keys, still
    unprocessed after retries) raises `RegistryUnavailable` for its caller; an exception of
    `lookup_many` is raised to every caller of its batch. Callers of one key share its answer.
    """

    def __init__(
        self,
        lookup_many: Callable[[list[K]], Awaitable[Mapping[K, bool]]],
        *,
        max_keys: int,
        delay: float = DEFAULT_DELAY,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self._lookup_many = lookup_many
        self._max_keys = max_keys
        self._delay = delay
        self._waiting: dict[K, asyncio.Future[bool]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def lookup(self, key: K) -> bool:
        future = self._waiting.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._waiting[key] = future
            if len(self._waiting) >= self._max_keys:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self._delay, self._flush)
        # Shielded: one caller giving up must not cancel the answer its batch shares.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Cancel the batches under way and fail the keys still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in self._waiting.values():
            future.cancel()
        self._waiting = {}
        tasks = list(self._sending)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, {}
        if not batch:
            return
        self.batches += 1
        task = asyncio.create_task(self._send(batch), name=f"registry-batch-{len(batch)}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: dict[K, asyncio.Future[bool]]) -> None:
        try:
            answers = await self._lookup_many(list(batch))
        except asyncio.CancelledError:
            for future in batch.values():
                future.cancel()
            raise
        except Exception as exc:
            _settle(batch, None, exc)
            return
        _settle(batch, answers, None)


def _settle(
    batch: dict[K, asyncio.Future[bool]],
    answers: Mapping[K, bool] | None,
    error: Exception | None,
) -> None:
    for key, future in batch.items():
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        elif answers is not None and key in answers:
            future.set_result(answers[key])
        else:
            future.set_exception(
                RegistryUnavailable(f"the registry left {key} unanswered in a batch; retry later")
            )
