"""Which lane of the shared link a new charge point goes to."""

from __future__ import annotations

import pytest

from gateway.links.broker import BrokerSettings
from gateway.links.lane import lane_client_id
from gateway.links.pool import LaneRoom, choose_lane
from gateway.settings import Settings


def test_the_first_lane_with_room_takes_the_cp() -> None:
    lanes = [LaneRoom(50, True), LaneRoom(48, True), LaneRoom(10, True)]
    assert choose_lane(lanes, 2, 50) == 1


def test_every_lane_full_asks_for_a_new_one() -> None:
    assert choose_lane([LaneRoom(50, True), LaneRoom(49, True)], 2, 50) is None
    assert choose_lane([], 2, 50) is None


def test_no_limit_keeps_every_cp_on_the_first_lane() -> None:
    assert choose_lane([LaneRoom(100_000, True)], 2, 0) == 0


def test_a_lane_that_lost_the_broker_takes_no_new_cp() -> None:
    assert choose_lane([LaneRoom(0, False), LaneRoom(30, True)], 2, 50) == 1
    assert choose_lane([LaneRoom(0, False)], 2, 50) is None


def test_the_lane_holding_the_cp_takes_its_new_channel_even_when_full() -> None:
    lanes = [LaneRoom(10, True), LaneRoom(50, True, holds_cp=True)]
    assert choose_lane(lanes, 2, 50) == 1


def test_a_lane_holding_the_cp_but_down_is_passed_over() -> None:
    lanes = [LaneRoom(10, True), LaneRoom(20, False, holds_cp=True)]
    assert choose_lane(lanes, 2, 50) == 0


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [
        ("mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883", None, 50),
        ("mqtts://abc-ats.iot.cn-north-1.amazonaws.com.cn:443", None, 50),
        ("mqtt://127.0.0.1:1883", None, 0),
        ("mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883", 200, 200),
        ("mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883", 0, 0),
        ("mqtt://127.0.0.1:1883", 50, 50),
    ],
)
def test_subscriptions_per_lane_default_to_the_iot_core_quota_there_only(
    url: str, configured: int | None, expected: int
) -> None:
    broker = BrokerSettings("gw", mqtt_url=url, shared_max_subscriptions=configured)
    assert broker.subscriptions_per_lane == expected


def test_lane_client_ids_are_the_shared_link_id_then_numbered() -> None:
    broker = BrokerSettings("gw-1", nonce="n")
    assert lane_client_id(broker, 0) == "ocpp-gateway:shared:gw-1:n"
    assert lane_client_id(broker, 3) == "ocpp-gateway:shared:gw-1:n:3"


def test_a_limit_of_one_subscription_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="set 2 or more, or 0 for no limit"):
        Settings(_env_file=None, shared_max_subscriptions=1)


def test_the_setting_reaches_the_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SHARED_MAX_SUBSCRIPTIONS", "40")
    broker = BrokerSettings.from_settings(Settings(_env_file=None), "gw")
    assert broker.subscriptions_per_lane == 40
