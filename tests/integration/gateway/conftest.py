from __future__ import annotations

import pytest

# (mode, impl, subscriptions per broker connection of the shared link: 4 makes a pool of
# connections of 2 CPs each, as AWS IoT Core's quota does with 25).
LINKS = [
    ("per-cp", "aiomqtt", ""),
    ("per-cp", "awscrt", ""),
    ("shared", "aiomqtt", ""),
    ("shared", "awscrt", ""),
    ("shared", "aiomqtt", "4"),
]


def _link_id(link: tuple[str, str, str]) -> str:
    mode, impl, pool = link
    return f"{mode}-{impl}" + ("-pool" if pool else "")


@pytest.fixture(params=LINKS, ids=[_link_id(link) for link in LINKS], autouse=True)
def link(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Every gateway test runs with each broker link (in-process and subprocess gateways)."""
    mode, impl, pool = request.param
    monkeypatch.setenv("GATEWAY_LINK_MODE", mode)
    monkeypatch.setenv("GATEWAY_LINK_IMPL", impl)
    if pool:
        monkeypatch.setenv("GATEWAY_SHARED_MAX_SUBSCRIPTIONS", pool)
    else:
        monkeypatch.delenv("GATEWAY_SHARED_MAX_SUBSCRIPTIONS", raising=False)
    return mode, impl
