from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mosquitto import (
    MosquittoContainer,
    MosquittoProcess,
    start_broker,
    start_session_broker,
)
from tests.support.stack import LocalStack


@pytest.fixture(scope="session")
def broker() -> Iterator[MosquittoProcess | MosquittoContainer]:
    """One Mosquitto for the whole test session: testcontainers' where a Docker engine
    answers, else the `mosquitto` binary on a free port with its own config."""
    session_broker = start_session_broker()
    yield session_broker
    session_broker.stop()


@pytest.fixture
def private_broker() -> Iterator[MosquittoProcess]:
    """A Mosquitto of the test's own, for tests that stop or restart the broker."""
    process = start_broker()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """The local stack: a broker of its own, processor and gateway processes, and a file
    registry with CP1. Its processor answers every call on its broker, so the stack never
    shares the session's `broker` with tests that play the CSMS themselves."""
    own_broker = start_broker()
    local = LocalStack(own_broker)
    local.start()
    yield local
    local.stop()
    own_broker.stop()
