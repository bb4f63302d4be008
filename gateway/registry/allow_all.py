"""`AllowAllRegistry`: every charge point id is registered. For development only."""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)


class AllowAllRegistry:
    loaded = True

    async def start(self) -> None:
        log.warning(
            "registry.allow_all",
            hint="every charge point id may connect: for development only, never in production; "
            "use GATEWAY_REGISTRY=file or aws-iot",
        )

    async def is_registered(self, cp_id: str) -> bool:
        return True

    def invalidate(self, cp_id: str) -> None:
        """Nothing to do: answers are never cached."""

    async def close(self) -> None:
        pass
