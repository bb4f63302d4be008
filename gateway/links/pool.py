"""Which lane (broker connection) of the shared link carries a new charge point (`shared.py`).

The choice is pure: given how full each lane is, pick one, or ask for a new lane.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# Each CP holds two subscriptions on its lane: `<cpId>/out` and its claim topic.
SUBSCRIPTIONS_PER_CP = 2


class LaneRoom(NamedTuple):
    """What the choice needs to know of one lane."""

    # Topic filters subscribed, being subscribed, or left to unsubscribe on the connection.
    used: int
    # Connected, or opened and not yet connected for the first time: new CPs may wait for it.
    accepting: bool
    # Already carries a channel of this CP: a new one takes its place and its subscriptions.
    holds_cp: bool = False


def choose_lane(lanes: Sequence[LaneRoom], needed: int, limit: int) -> int | None:
    """The index of the lane for a CP needing `needed` subscriptions; None: open a new lane.

    `limit` is the subscriptions a lane may hold (0: no limit). A lane that holds the CP already
    comes first (the newer channel replaces the older one there without new subscriptions);
    otherwise the first accepting lane with room, so that lanes fill in order and few are opened.
    A lane that lost the broker takes no new CP: its CPs wait for it within the grace period.
    """
    for index, lane in enumerate(lanes):
        if lane.accepting and lane.holds_cp:
            return index
    for index, lane in enumerate(lanes):
        if lane.accepting and (limit == 0 or lane.used + needed <= limit):
            return index
    return None
