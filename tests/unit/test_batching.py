"""Subscribe/unsubscribe requests coalesced into packets."""

from __future__ import annotations

import asyncio

import pytest

from gateway.links.batching import TopicBatcher, packets_for


def requests(*sizes: int) -> list[tuple[list[str], asyncio.Future[None]]]:
    loop = asyncio.new_event_loop()
    try:
        return [
            ([f"r{n}-t{i}" for i in range(size)], loop.create_future())
            for n, size in enumerate(sizes)
        ]
    finally:
        loop.close()


def shape(packets: list[list[tuple[list[str], asyncio.Future[None]]]]) -> list[list[int]]:
    return [[len(topics) for topics, _ in packet] for packet in packets]


@pytest.mark.parametrize(
    ("sizes", "limit", "expected"),
    [
        ((2, 2, 2, 2), 8, [[2, 2, 2, 2]]),
        ((2, 2, 2, 2, 2), 8, [[2, 2, 2, 2], [2]]),
        ((3, 3, 3), 8, [[3, 3], [3]]),  # a request is never split
        ((10, 1), 8, [[10], [1]]),  # an oversized request travels alone
        ((), 8, []),
        ((2,) * 600, 500, [[2] * 250, [2] * 250, [2] * 100]),
    ],
)
def test_packets_hold_whole_requests_in_order_up_to_the_limit(
    sizes: tuple[int, ...], limit: int, expected: list[list[int]]
) -> None:
    given = requests(*sizes)
    packets = packets_for(given, limit)
    assert shape(packets) == expected
    assert [request for packet in packets for request in packet] == given


async def test_requests_of_one_loop_iteration_share_a_packet() -> None:
    sent: list[list[str]] = []

    async def send(topics: list[str]) -> None:
        sent.append(topics)

    batcher = TopicBatcher(send, max_topics=4)
    await asyncio.gather(*(batcher.request([f"{n}/out", f"{n}/claim"]) for n in range(5)))
    assert sent == [
        ["0/out", "0/claim", "1/out", "1/claim"],
        ["2/out", "2/claim", "3/out", "3/claim"],
        ["4/out", "4/claim"],
    ]


async def test_a_refused_topic_fails_only_its_own_request() -> None:
    sent: list[list[str]] = []

    async def send(topics: list[str]) -> None:
        sent.append(topics)
        if "bad/out" in topics:
            raise PermissionError("refused: bad/out")

    batcher = TopicBatcher(send, max_topics=10)
    results = await asyncio.gather(
        batcher.request(["good/out"]),
        batcher.request(["bad/out"]),
        batcher.request(["fine/out"]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], PermissionError)
    assert sent[0] == ["good/out", "bad/out", "fine/out"]
    assert sent[1:] == [["good/out"], ["bad/out"], ["fine/out"]]


async def test_a_cancelled_requester_does_not_disturb_the_others() -> None:
    release = asyncio.Event()

    async def send(topics: list[str]) -> None:
        await release.wait()

    batcher = TopicBatcher(send, max_topics=10)
    leaving = asyncio.create_task(batcher.request(["left/out"]))
    staying = asyncio.create_task(batcher.request(["stays/out"]))
    await asyncio.sleep(0.01)
    leaving.cancel()
    release.set()
    await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving
