"""Single-key lookups coalesced into batches (DynamoDB BatchGetItem)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.registry.base import RegistryUnavailable
from gateway.registry.key_batcher import KeyBatcher


class Backend:
    def __init__(self, registered: set[str], unanswered: frozenset[str] = frozenset()) -> None:
        self.registered = registered
        self.unanswered = unanswered
        self.batches: list[list[str]] = []
        self.error: Exception | None = None

    async def lookup_many(self, keys: list[str]) -> Mapping[str, bool]:
        self.batches.append(keys)
        if self.error is not None:
            raise self.error
        return {key: key in self.registered for key in keys if key not in self.unanswered}


async def test_lookups_made_together_share_one_batch() -> None:
    backend = Backend({"CP1", "CP3"})
    batcher = KeyBatcher(backend.lookup_many, max_keys=100, delay=0.01)
    answers = await asyncio.gather(*(batcher.lookup(f"CP{n}") for n in range(1, 5)))
    assert answers == [True, False, True, False]
    assert backend.batches == [["CP1", "CP2", "CP3", "CP4"]]
    assert batcher.batches == 1


async def test_a_full_batch_is_sent_without_waiting_and_the_rest_after_the_delay() -> None:
    backend = Backend(set())
    batcher = KeyBatcher(backend.lookup_many, max_keys=2, delay=0.01)
    await asyncio.gather(*(batcher.lookup(f"CP{n}") for n in range(5)))
    assert [len(batch) for batch in backend.batches] == [2, 2, 1]


async def test_callers_of_one_key_share_its_place_in_the_batch() -> None:
    backend = Backend({"CP1"})
    batcher = KeyBatcher(backend.lookup_many, max_keys=100, delay=0.01)
    assert await asyncio.gather(batcher.lookup("CP1"), batcher.lookup("CP1")) == [True, True]
    assert backend.batches == [["CP1"]]


async def test_a_key_left_unanswered_is_unavailable_and_the_others_are_answered() -> None:
    backend = Backend({"CP1"}, unanswered=frozenset({"CP2"}))
    batcher = KeyBatcher(backend.lookup_many, max_keys=100, delay=0)
    results = await asyncio.gather(
        batcher.lookup("CP1"), batcher.lookup("CP2"), return_exceptions=True
    )
    assert results[0] is True
    assert isinstance(results[1], RegistryUnavailable)
    assert "retry later" in str(results[1])


async def test_a_failed_batch_fails_each_of_its_callers() -> None:
    backend = Backend(set())
    backend.error = RegistryUnavailable("throttled")
    batcher = KeyBatcher(backend.lookup_many, max_keys=100, delay=0)
    results = await asyncio.gather(
        batcher.lookup("CP1"), batcher.lookup("CP2"), return_exceptions=True
    )
    assert [str(result) for result in results] == ["throttled", "throttled"]


async def test_close_cancels_the_keys_still_waiting() -> None:
    batcher = KeyBatcher(Backend(set()).lookup_many, max_keys=100, delay=60)
    waiting = asyncio.create_task(batcher.lookup("CP1"))
    await asyncio.sleep(0)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        KeyBatcher(Backend(set()).lookup_many, max_keys=0)
    with pytest.raises(ValueError, match="delay"):
        KeyBatcher(Backend(set()).lookup_many, max_keys=1, delay=-1)
