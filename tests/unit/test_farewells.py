"""Late farewells without I/O: which offline documents are published once the broker is back."""

from __future__ import annotations

from gateway.links.connection import LinkError
from gateway.links.farewells import LateFarewells, still_ours
from gateway.observability import Metrics
from gateway.presence import Presence

OURS = Presence(
    online=b'{"connected": true, "connection": 1}', will=b'{"closed_by": "gateway_lost"}'
)
NEWER = b'{"connected": true, "connection": 2}'
FAREWELL = b'{"connected": false, "closed_by": "broker_loss"}'


class Broker:
    """Retained documents by topic, read and published as through the probe or a lane."""

    def __init__(self, retained: dict[str, bytes], reachable: bool = True) -> None:
        self.retained = retained
        self.reachable = reachable
        self.fail_publishing = False

    @property
    def ready(self) -> bool:
        return self.reachable

    async def read_retained(self, topic: str) -> bytes | None:
        return self.retained.get(topic) if self.reachable else None

    async def publish_retained(self, topic: str, payload: bytes) -> None:
        if self.fail_publishing:
            raise LinkError("connection lost")
        self.retained[topic] = payload


def counted(metrics: Metrics, result: str) -> float:
    return metrics.late_farewells.labels(result=result)._value.get()


def farewells_through(broker: Broker, metrics: Metrics | None = None) -> LateFarewells:
    return LateFarewells(metrics or Metrics(), lambda: broker)


async def published(farewells: LateFarewells) -> None:
    task = farewells.publish_soon()
    if task is not None:
        await task


def test_only_the_closed_connections_own_documents_are_replaced() -> None:
    assert still_ours(OURS.online, OURS)
    assert still_ours(OURS.will, OURS)
    assert not still_ours(NEWER, OURS)
    assert not still_ours(None, OURS)


async def test_a_farewell_replaces_its_own_document_and_never_a_newer_one() -> None:
    metrics = Metrics()
    broker = Broker({"CP1/presence": OURS.online, "CP2/presence": NEWER})
    farewells = farewells_through(broker, metrics)
    farewells.keep("CP1/presence", OURS, FAREWELL)
    farewells.keep("CP2/presence", OURS, FAREWELL)
    await published(farewells)
    assert broker.retained == {"CP1/presence": FAREWELL, "CP2/presence": NEWER}
    assert (counted(metrics, "published"), counted(metrics, "superseded")) == (1, 1)
    assert len(farewells) == 0


async def test_a_cp_that_connects_here_again_is_forgotten() -> None:
    broker = Broker({"CP1/presence": OURS.online})
    farewells = farewells_through(broker)
    farewells.keep("CP1/presence", OURS, FAREWELL)
    farewells.forget("CP1/presence")
    await published(farewells)
    assert broker.retained == {"CP1/presence": OURS.online}


async def test_farewells_wait_for_the_next_time_the_broker_is_back() -> None:
    broker = Broker({"CP1/presence": OURS.online}, reachable=False)
    farewells = farewells_through(broker)
    farewells.keep("CP1/presence", OURS, FAREWELL)
    await published(farewells)
    broker.reachable = True
    broker.fail_publishing = True
    await published(farewells)
    assert len(farewells) == 1
    broker.fail_publishing = False
    await published(farewells)
    assert broker.retained == {"CP1/presence": FAREWELL}


async def test_publishing_runs_once_at_a_time() -> None:
    broker = Broker({"CP1/presence": OURS.online})
    farewells = farewells_through(broker)
    farewells.keep("CP1/presence", OURS, FAREWELL)  # starts publishing: the broker is there
    first = farewells.publish_soon()
    assert farewells.publish_soon() is first
    assert first is not None
    await first
    assert broker.retained == {"CP1/presence": FAREWELL}
    assert farewells.publish_soon() is None


async def test_nothing_is_published_once_the_link_closes() -> None:
    broker = Broker({"CP1/presence": OURS.online}, reachable=False)
    farewells = farewells_through(broker)
    farewells.keep("CP1/presence", OURS, FAREWELL)
    await farewells.close()
    broker.reachable = True
    assert farewells.publish_soon() is None
