"""The registry decides which charge point ids may connect."""

from __future__ import annotations

from typing import Protocol


class RegistryUnavailable(Exception):
    """The registry could not answer for this id; the charge point should retry later."""


class RegistryMisconfigured(Exception):
    """The registry cannot start with this configuration; the message says what to change."""


class Registry(Protocol):
    """Answers whether a charge point id is registered (an IoT Thing, a line in a file, ...).

    `is_registered` raises `RegistryUnavailable` when the backend cannot answer and the id is
    not known from an earlier answer; the gateway then refuses with a retryable close (1013).
    """

    async def start(self) -> None: ...

    @property
    def loaded(self) -> bool:
        """Whether the registry has read what it answers from (the AWS mirror fills in the
        background after `start()`); the gateway reports not ready (503 on /health) until then."""
        ...

    async def is_registered(self, cp_id: str) -> bool: ...

    def invalidate(self, cp_id: str) -> None:
        """`cp_id` just left the registry (its Thing was deleted): stop trusting a cached "yes"."""
        ...

    async def close(self) -> None: ...
