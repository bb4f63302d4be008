from __future__ import annotations

import pytest


@pytest.fixture(params=["per-cp", "shared"], autouse=True)
def link_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every gateway test runs with both broker links (in-process and subprocess gateways)."""
    mode = str(request.param)
    monkeypatch.setenv("GATEWAY_LINK_MODE", mode)
    return mode
