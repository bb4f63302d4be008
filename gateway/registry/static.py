"""`StaticRegistry`: a fixed set of ids, e.g. from `GATEWAY_REGISTRY_IDS=CP1,CP2`."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id

log = structlog.get_logger(__name__)


class StaticRegistry:
    loaded = True  # read in full by `start()`

    def __init__(self, ids: Iterable[str]) -> None:
        given = [cp_id.strip() for cp_id in ids]
        self.ids = frozenset(cp_id for cp_id in given if is_valid_cp_id(cp_id))
        self.invalid = [cp_id for cp_id in given if not is_valid_cp_id(cp_id)]

    async def start(self) -> None:
        for cp_id in self.invalid:
            log.warning(
                "registry.static_id_skipped", cp_id=cp_id, reason=describe_invalid_cp_id(cp_id)
            )
        if not self.ids:
            log.warning(
                "registry.static_empty",
                hint="every charge point is refused; list ids in GATEWAY_REGISTRY_IDS=CP1,CP2",
            )
        else:
            log.info("registry.static_loaded", ids=len(self.ids))

    async def is_registered(self, cp_id: str) -> bool:
        return cp_id in self.ids

    def invalidate(self, cp_id: str) -> None:
        """Nothing to do: answers are never cached."""

    async def close(self) -> None:
        pass
