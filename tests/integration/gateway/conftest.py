from __future__ import annotations

import pytest

LINKS = [("per-cp", "aiomqtt"), ("per-cp", "awscrt"), ("shared", "aiomqtt"), ("shared", "awscrt")]


@pytest.fixture(params=LINKS, ids=["-".join(link) for link in LINKS], autouse=True)
def link(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Every gateway test runs with each broker link (in-process and subprocess gateways)."""
    mode, impl = request.param
    monkeypatch.setenv("GATEWAY_LINK_MODE", mode)
    monkeypatch.setenv("GATEWAY_LINK_IMPL", impl)
    return mode, impl
