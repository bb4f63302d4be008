"""Variables a CSMS reads and writes: 2.0.1 statuses, and the 1.6 view of the same store."""

from __future__ import annotations

import pytest

from simulator.device_model import (
    HEARTBEAT_INTERVAL,
    METER_INTERVAL,
    ConfigurationStatus,
    DeviceModel,
    GetStatus,
    SetStatus,
    format_number,
    initial_device_model,
)


def model() -> DeviceModel:
    return initial_device_model(
        cp_id="CP1",
        model="ABC 123 XYZ",
        vendor="Acme Electrical Systems",
        serial="CP1234567890A01",
        heartbeat_interval=10.0,
        meter_interval=0.5,
        security_profile=1,
        retry_wait_minimum=5.0,
        retry_random_range=5.0,
        retry_repeat_times=5,
    )


def test_get_known_variable() -> None:
    assert model().get("OCPPCommCtrlr", "HeartbeatInterval") == (GetStatus.ACCEPTED, "10")
    assert model().get("SecurityCtrlr", "Identity") == (GetStatus.ACCEPTED, "CP1")
    assert model().get("SampledDataCtrlr", "TxUpdatedInterval") == (GetStatus.ACCEPTED, "0.5")


@pytest.mark.parametrize(
    ("component", "variable", "attribute", "status"),
    [
        ("NoSuchCtrlr", "HeartbeatInterval", "Actual", GetStatus.UNKNOWN_COMPONENT),
        ("OCPPCommCtrlr", "NoSuchVariable", "Actual", GetStatus.UNKNOWN_VARIABLE),
        ("OCPPCommCtrlr", "HeartbeatInterval", "MaxSet", GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE),
    ],
)
def test_get_unknown_things(
    component: str, variable: str, attribute: str, status: GetStatus
) -> None:
    assert model().get(component, variable, attribute) == (status, None)


def test_set_writable_variable() -> None:
    store = model()
    assert store.set("OCPPCommCtrlr", "HeartbeatInterval", "30") is SetStatus.ACCEPTED
    assert store.number(HEARTBEAT_INTERVAL) == 30.0


@pytest.mark.parametrize(
    ("component", "variable", "value", "status"),
    [
        ("OCPPCommCtrlr", "HeartbeatInterval", "0", SetStatus.REJECTED),
        ("OCPPCommCtrlr", "HeartbeatInterval", "-5", SetStatus.REJECTED),
        ("OCPPCommCtrlr", "HeartbeatInterval", "ten", SetStatus.REJECTED),
        ("OCPPCommCtrlr", "HeartbeatInterval", "1.5", SetStatus.REJECTED),
        ("OCPPCommCtrlr", "HeartbeatInterval", "٣", SetStatus.REJECTED),
        ("SecurityCtrlr", "Identity", "CP9", SetStatus.REJECTED),
        ("AuthCtrlr", "AuthorizeRemoteStart", "maybe", SetStatus.REJECTED),
        ("NoSuchCtrlr", "X", "1", SetStatus.UNKNOWN_COMPONENT),
        ("OCPPCommCtrlr", "X", "1", SetStatus.UNKNOWN_VARIABLE),
    ],
)
def test_bad_writes_are_refused_and_change_nothing(
    component: str, variable: str, value: str, status: SetStatus
) -> None:
    store = model()
    assert store.set(component, variable, value) is status
    assert store.get("OCPPCommCtrlr", "HeartbeatInterval")[1] == "10"
    assert store.get("SecurityCtrlr", "Identity")[1] == "CP1"


def test_retry_variables_accept_zero() -> None:
    store = model()
    assert store.set("OCPPCommCtrlr", "RetryBackOffRandomRange", "0") is SetStatus.ACCEPTED


def test_ocpp16_configuration_view_shares_the_store() -> None:
    store = model()
    known, unknown = store.configuration_16(["HeartbeatInterval", "NoSuchKey"])
    assert known == [{"key": "HeartbeatInterval", "readonly": False, "value": "10"}]
    assert unknown == ["NoSuchKey"]
    assert store.change_16("HeartbeatInterval", "60") is ConfigurationStatus.ACCEPTED
    assert store.get("OCPPCommCtrlr", "HeartbeatInterval")[1] == "60"
    assert store.change_16("MeterValueSampleInterval", "15") is ConfigurationStatus.ACCEPTED
    assert store.number(METER_INTERVAL) == 15.0


def test_ocpp16_all_keys_and_refusals() -> None:
    store = model()
    known, unknown = store.configuration_16(None)
    keys = {entry["key"]: entry for entry in known}
    assert set(keys) >= {"HeartbeatInterval", "MeterValueSampleInterval", "NumberOfConnectors"}
    assert keys["NumberOfConnectors"]["readonly"] is True
    assert unknown == []
    assert store.change_16("NumberOfConnectors", "2") is ConfigurationStatus.REJECTED
    assert store.change_16("HeartbeatInterval", "soon") is ConfigurationStatus.REJECTED
    assert store.change_16("Bogus", "1") is ConfigurationStatus.NOT_SUPPORTED


def test_station_may_assign_fractional_values_itself() -> None:
    store = model()
    store.assign(HEARTBEAT_INTERVAL, 0.25)
    assert store.number(HEARTBEAT_INTERVAL) == 0.25
    with pytest.raises(KeyError):
        store.assign(("Nope", "Nope"), 1.0)


def test_model_must_have_every_variable() -> None:
    with pytest.raises(ValueError, match="lacks values"):
        DeviceModel({HEARTBEAT_INTERVAL: "10"})


def test_format_number() -> None:
    assert format_number(10.0) == "10"
    assert format_number(10) == "10"
    assert format_number(0.5) == "0.5"
