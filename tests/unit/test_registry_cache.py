"""RegistryCache: lifetimes, single flight and stale answers, with a fake clock and backend."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from gateway.registry.base import RegistryUnavailable
from gateway.registry.cache import RegistryCache
from tests.support.clock import FakeClock


class Backend:
    """Answers from `registered`; raises `error` when set; waits for `gate` when set."""

    def __init__(self, *registered: str) -> None:
        self.registered = set(registered)
        self.calls: list[str] = []
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def lookup(self, cp_id: str) -> bool:
        self.calls.append(cp_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return cp_id in self.registered


async def settle() -> None:
    """Let background lookups (and their done callbacks) run."""
    for _ in range(5):
        await asyncio.sleep(0)


def make_cache(
    backend: Backend, clock: FakeClock, *, max_negative_entries: int = 1000
) -> RegistryCache[str]:
    return RegistryCache(
        backend.lookup,
        positive_ttl=300.0,
        negative_ttl=30.0,
        clock=clock,
        max_negative_entries=max_negative_entries,
    )


async def test_registered_answer_is_reused_until_the_positive_ttl_expires() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    assert await cache.is_registered("CP1")
    backend.registered.clear()
    clock.advance(299.9)
    assert await cache.is_registered("CP1")
    assert backend.calls == ["CP1"]
    clock.advance(0.1)
    assert await cache.is_registered("CP1")  # expired: served at once, refreshed meanwhile
    await settle()
    assert backend.calls == ["CP1", "CP1"]
    assert not await cache.is_registered("CP1")  # the refresh said "no"
    assert cache.stats.stale_answers == 1


async def test_an_expired_registered_id_is_answered_while_a_hung_backend_is_refreshing() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    assert await cache.is_registered("CP1")
    backend.gate = asyncio.Event()  # the backend hangs from now on
    clock.advance(301)
    answers = [await cache.is_registered("CP1") for _ in range(3)]
    assert answers == [True, True, True]
    await settle()
    assert backend.calls == ["CP1", "CP1"]  # one refresh in flight, shared
    assert (cache.stats.stale_answers, cache.stats.shared) == (3, 2)
    backend.gate.set()
    await settle()
    assert cache.cached_answer("CP1") is True  # refreshed: a fresh entry again


async def test_an_unknown_id_waits_at_most_the_lookup_timeout() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache: RegistryCache[str] = RegistryCache(
        backend.lookup, positive_ttl=300.0, negative_ttl=30.0, clock=clock, lookup_timeout=0.01
    )
    with pytest.raises(RegistryUnavailable, match=r"did not answer for CP1 within 0.01 s"):
        await cache.is_registered("CP1")
    assert cache.stats.timeouts == 1
    backend.gate.set()  # the lookup carried on; its answer is kept for the next caller
    await settle()
    assert cache.cached_answer("CP1") is True
    assert backend.calls == ["CP1"]


def test_a_lookup_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lookup_timeout must be > 0"):
        RegistryCache(Backend().lookup, positive_ttl=1, negative_ttl=1, lookup_timeout=0)


async def test_unknown_answer_is_reused_until_the_negative_ttl_expires() -> None:
    backend, clock = Backend(), FakeClock()
    cache = make_cache(backend, clock)
    assert not await cache.is_registered("CP2")
    backend.registered.add("CP2")
    clock.advance(29.9)
    assert not await cache.is_registered("CP2")
    assert backend.calls == ["CP2"]
    clock.advance(0.1)
    assert await cache.is_registered("CP2")
    assert cache.stats.lookups == 2
    assert cache.stats.hits == 1


async def test_concurrent_lookups_of_one_id_share_a_single_backend_call() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache = make_cache(backend, clock)
    callers = [asyncio.create_task(cache.is_registered("CP1")) for _ in range(50)]
    others = [asyncio.create_task(cache.is_registered("CP2")) for _ in range(5)]
    await asyncio.sleep(0)
    backend.gate.set()
    assert await asyncio.gather(*callers) == [True] * 50
    assert await asyncio.gather(*others) == [False] * 5
    assert sorted(backend.calls) == ["CP1", "CP2"]
    assert cache.stats.shared == 49 + 4


async def test_a_caller_giving_up_does_not_cancel_the_shared_lookup() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache = make_cache(backend, clock)
    impatient = asyncio.create_task(cache.is_registered("CP1"))
    patient = asyncio.create_task(cache.is_registered("CP1"))
    await asyncio.sleep(0)
    impatient.cancel()
    backend.gate.set()
    assert await patient
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert backend.calls == ["CP1"]


async def test_known_id_is_answered_from_the_stale_entry_while_the_backend_fails() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    assert await cache.is_registered("CP1")
    clock.advance(3600)
    backend.error = ConnectionError("control plane unreachable")
    with capture_logs() as logs:
        assert await cache.is_registered("CP1")
        await settle()
        assert await cache.is_registered("CP1")
        await settle()
    # Failures are not cached: each call tried the backend again.
    assert backend.calls == ["CP1", "CP1", "CP1"]
    assert (cache.stats.stale_answers, cache.stats.errors) == (2, 2)
    stale = [entry for entry in logs if entry["event"] == "registry.stale_answer"]
    assert stale[0]["cp_id"] == "CP1"
    assert "control plane unreachable" in stale[0]["error"]
    backend.error = None
    clock.advance(1)
    assert await cache.is_registered("CP1")


async def test_unknown_id_raises_registry_unavailable_while_the_backend_fails() -> None:
    backend, clock = Backend(), FakeClock()
    backend.error = TimeoutError("read timed out")
    cache = make_cache(backend, clock)
    with pytest.raises(RegistryUnavailable, match=r"CP9.*read timed out"):
        await cache.is_registered("CP9")
    backend.error = None
    assert not await cache.is_registered("CP9")


async def test_an_id_answered_unknown_after_being_registered_gets_no_stale_answer() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    assert await cache.is_registered("CP1")
    backend.registered.clear()
    clock.advance(301)
    assert await cache.is_registered("CP1")  # stale, while the refresh finds it gone
    await settle()
    assert not await cache.is_registered("CP1")
    clock.advance(31)
    backend.error = ConnectionError("down")
    with pytest.raises(RegistryUnavailable):
        await cache.is_registered("CP1")


async def test_registry_unavailable_from_the_backend_keeps_its_message() -> None:
    backend, clock = Backend(), FakeClock()
    backend.error = RegistryUnavailable("throttled: retry later")
    cache = make_cache(backend, clock)
    with pytest.raises(RegistryUnavailable, match=r"^throttled: retry later$"):
        await cache.is_registered("CP1")


async def test_unknown_answers_are_bounded_oldest_first() -> None:
    backend, clock = Backend(), FakeClock()
    cache = make_cache(backend, clock, max_negative_entries=3)
    for cp_id in ["A", "B", "C", "D"]:
        assert not await cache.is_registered(cp_id)
    assert cache.cached_answer("A") is None
    assert [cache.cached_answer(cp_id) for cp_id in ["B", "C", "D"]] == [False, False, False]


async def test_expired_unknown_answers_are_dropped() -> None:
    backend, clock = Backend(), FakeClock()
    cache = make_cache(backend, clock)
    for cp_id in ["A", "B"]:
        await cache.is_registered(cp_id)
    clock.advance(31)
    assert cache.cached_answer("A") is None
    assert cache._unknown_until == {}


async def test_forget_makes_the_next_call_look_up_again() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    await cache.is_registered("CP1")
    cache.forget("CP1")
    assert not cache.was_registered("CP1")
    await cache.is_registered("CP1")
    assert backend.calls == ["CP1", "CP1"]


async def test_close_cancels_lookups_in_flight() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache = make_cache(backend, clock)
    caller = asyncio.create_task(cache.is_registered("CP1"))
    await asyncio.sleep(0)
    await cache.close()
    with pytest.raises(asyncio.CancelledError):
        await caller


@pytest.mark.parametrize(
    ("positive", "negative", "max_negative"), [(-1, 30, 10), (300, -1, 10), (300, 30, 0)]
)
def test_invalid_limits_are_refused_with_a_clear_message(
    positive: float, negative: float, max_negative: int
) -> None:
    with pytest.raises(ValueError, match=">= "):
        RegistryCache(
            Backend().lookup,
            positive_ttl=positive,
            negative_ttl=negative,
            max_negative_entries=max_negative,
        )


async def test_misses_count_every_call_that_needed_the_backend() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache = make_cache(backend, clock)
    callers = [asyncio.create_task(cache.is_registered("CP1")) for _ in range(3)]
    await asyncio.sleep(0)
    backend.gate.set()
    await asyncio.gather(*callers)
    await cache.is_registered("CP1")
    assert (cache.stats.misses, cache.stats.lookups, cache.stats.shared) == (3, 1, 2)
    assert cache.stats.hits == 1


async def test_mark_unregistered_answers_no_without_the_backend_until_the_negative_ttl() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    assert await cache.is_registered("CP1")
    cache.mark_unregistered("CP1")
    assert not await cache.is_registered("CP1")
    assert backend.calls == ["CP1"]
    clock.advance(30)
    assert await cache.is_registered("CP1")  # created again meanwhile: asked, and accepted
    assert backend.calls == ["CP1", "CP1"]


async def test_a_marked_id_gets_no_stale_answer_while_the_backend_fails() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    cache = make_cache(backend, clock)
    assert await cache.is_registered("CP1")
    cache.mark_unregistered("CP1")
    clock.advance(31)
    backend.error = ConnectionError("down")
    with pytest.raises(RegistryUnavailable):
        await cache.is_registered("CP1")
    assert cache.stats.stale_answers == 0


async def test_a_lookup_under_way_when_the_id_is_marked_answers_no_and_is_not_kept() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache = make_cache(backend, clock)
    before = asyncio.create_task(cache.is_registered("CP1"))
    await asyncio.sleep(0)
    cache.mark_unregistered("CP1")  # the backend has not answered yet: its "yes" is outdated
    backend.gate.set()
    assert not await before
    assert cache.cached_answer("CP1") is False


async def test_close_also_cancels_a_lookup_superseded_by_mark_unregistered() -> None:
    backend, clock = Backend("CP1"), FakeClock()
    backend.gate = asyncio.Event()
    cache = make_cache(backend, clock)
    caller = asyncio.create_task(cache.is_registered("CP1"))
    await asyncio.sleep(0)
    cache.mark_unregistered("CP1")
    await cache.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
