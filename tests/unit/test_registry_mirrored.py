"""`MirroredRegistry` over a source in memory: what is answered from the mirror, what is not."""

from __future__ import annotations

import asyncio

import pytest

from gateway.registry.base import RegistryUnavailable
from gateway.registry.cache import CacheStats
from gateway.registry.mirrored import MirroredRegistry, PageToken


class Source:
    """Pages of ids; per-id lookups answered from `registered`, or failing when `down`."""

    backend = "memory"
    loaded = True

    def __init__(self, registered: list[str], page_size: int = 2) -> None:
        self.registered = registered
        self.page_size = page_size
        self.stats = CacheStats()
        self.lookups: list[str] = []
        self.invalidated: list[str] = []
        self.forgotten: list[str] = []
        self.failing_pages = 0
        self.down = False
        self.page_gate = asyncio.Event()
        self.page_gate.set()

    async def start(self) -> None:
        pass

    async def is_registered(self, cp_id: str) -> bool:
        self.lookups.append(cp_id)
        if self.down:
            raise RegistryUnavailable("down")
        return cp_id in self.registered

    def invalidate(self, cp_id: str) -> None:
        self.invalidated.append(cp_id)

    def forget(self, cp_id: str) -> None:
        self.forgotten.append(cp_id)

    async def list_page(self, token: PageToken | None) -> tuple[list[str], PageToken | None]:
        await self.page_gate.wait()
        if self.failing_pages:
            self.failing_pages -= 1
            raise RegistryUnavailable("throttled")
        start = int(str(token or 0))
        end = start + self.page_size
        return self.registered[start:end], (end if end < len(self.registered) else None)

    async def close(self) -> None:
        pass


def mirrored(source: Source, resync_interval: float = 0) -> MirroredRegistry:
    return MirroredRegistry(
        source, resync_interval=resync_interval, retry_initial=0.001, retry_maximum=0.001
    )


async def test_known_ids_are_answered_from_the_mirror_without_a_lookup() -> None:
    source = Source(["CP1", "CP2", "CP3"])
    registry = mirrored(source)
    await registry.start()
    await asyncio.wait_for(registry.wait_loaded(), 5)
    source.down = True
    assert await registry.is_registered("CP3")
    assert source.lookups == []
    assert (registry.mirror_stats.pages, registry.mirror_stats.ids) == (2, 3)
    assert (registry.mirror_stats.hits, registry.loaded) == (1, True)
    with pytest.raises(RegistryUnavailable):
        await registry.is_registered("CP4")
    await registry.close()


async def test_before_the_load_ids_are_looked_up_and_remembered() -> None:
    source = Source(["CP1"])
    source.page_gate.clear()
    registry = mirrored(source)
    await registry.start()
    assert not registry.loaded
    assert await registry.is_registered("CP1")
    assert not await registry.is_registered("CP9")
    assert source.lookups == ["CP1", "CP9"]
    assert await registry.is_registered("CP1")
    assert source.lookups == ["CP1", "CP9"]  # the mirror holds it now
    source.page_gate.set()
    await asyncio.wait_for(registry.wait_loaded(), 5)
    await registry.close()


async def test_a_failed_page_is_asked_again_and_the_load_completes() -> None:
    source = Source(["CP1", "CP2", "CP3"])
    source.failing_pages = 2
    registry = mirrored(source)
    await registry.start()
    await asyncio.wait_for(registry.wait_loaded(), 5)
    assert registry.mirror_stats.page_errors == 2
    assert len(registry.mirror) == 3
    await registry.close()


async def test_invalidate_removes_from_the_mirror_and_the_source() -> None:
    source = Source(["CP1"])
    registry = mirrored(source)
    await registry.start()
    await asyncio.wait_for(registry.wait_loaded(), 5)
    registry.invalidate("CP1")
    source.registered = []
    assert not await registry.is_registered("CP1")
    assert source.invalidated == ["CP1"]
    await registry.close()


async def test_a_resync_drops_deleted_ids_and_their_cached_answers() -> None:
    source = Source(["CP1", "CP2"])
    registry = mirrored(source, resync_interval=0.01)
    await registry.start()
    await asyncio.wait_for(registry.wait_loaded(), 5)
    source.registered = ["CP2"]
    for _ in range(500):
        if "CP1" not in registry.mirror:
            break
        await asyncio.sleep(0.01)
    assert "CP1" not in registry.mirror and "CP2" in registry.mirror
    assert "CP1" in source.forgotten
    await registry.close()


def test_the_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="resync_interval"):
        MirroredRegistry(Source([]), resync_interval=-1)
