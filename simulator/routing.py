"""Typed front for the `ocpp` library's handler decorators (the library ships no type hints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from ocpp.routing import after as _after
from ocpp.routing import on as _on

Handler = TypeVar("Handler", bound=Callable[..., Any])


def on(action: str) -> Callable[[Handler], Handler]:
    """Answer the CSMS-initiated `action` with the handler's return value."""
    return cast(Callable[[Handler], Handler], _on(action))


def after(action: str) -> Callable[[Handler], Handler]:
    """Run the handler once the answer to `action` has been sent."""
    return cast(Callable[[Handler], Handler], _after(action))
