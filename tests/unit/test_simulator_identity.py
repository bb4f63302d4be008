"""BootNotification contents and the energy meter of the charging scenario."""

from __future__ import annotations

import json

import pytest

from simulator.identity import (
    DEFAULT_VENDOR,
    StationIdentity,
    boot_payload_16,
    boot_payload_201,
    for_version,
    identity_problems,
)
from simulator.metering import EnergyMeter, energy_wh, sampled_values_16, sampled_values_201

SEED_BOOT = (
    '{"chargingStation":{"model":"ABC 123 XYZ","vendorName":"Acme Electrical Systems",'
    '"firmwareVersion":"10.9.8.ABC","serialNumber":"CP1234567890A01",'
    '"modem":{"iccid":"891004234814455936F","imsi":"310410123456789"}},"reason":"PowerUp"}'
)


def test_default_boot_payload_is_the_one_users_know() -> None:
    encoded = json.dumps(boot_payload_201(StationIdentity()), separators=(",", ":"))
    assert encoded == SEED_BOOT


def test_boot_payload_carries_the_given_attributes_and_reason() -> None:
    identity = StationIdentity(model="M", vendor="V", firmware="F", serial="S")
    payload = boot_payload_201(identity, reason="RemoteReset")
    assert payload["chargingStation"]["model"] == "M"
    assert payload["chargingStation"]["serialNumber"] == "S"
    assert payload["reason"] == "RemoteReset"


def test_ocpp16_payload_and_vendor_fitted_to_its_20_characters() -> None:
    identity = for_version(StationIdentity(), "1.6")
    assert identity.vendor == DEFAULT_VENDOR[:20]
    assert identity_problems(identity, "1.6") == []
    payload = boot_payload_16(identity)
    assert payload["chargePointVendor"] == "Acme Electrical Syst"
    assert payload["chargePointModel"] == "ABC 123 XYZ"
    assert payload["iccid"] == "891004234814455936F"
    assert for_version(StationIdentity(), "2.0.1").vendor == DEFAULT_VENDOR


def test_too_long_values_are_named() -> None:
    identity = StationIdentity(model="M" * 21, serial="S" * 26)
    assert identity_problems(identity, "2.0.1") == [
        f"model {'M' * 21!r} is 21 characters; OCPP 2.0.1 allows at most 20",
        f"serial {'S' * 26!r} is 26 characters; OCPP 2.0.1 allows at most 25",
    ]
    custom_vendor = StationIdentity(vendor="V" * 21)
    assert identity_problems(for_version(custom_vendor, "1.6"), "1.6") == [
        f"vendor {'V' * 21!r} is 21 characters; OCPP 1.6 allows at most 20"
    ]


def test_energy() -> None:
    assert energy_wh(11.0, 3600.0) == 11_000.0
    assert energy_wh(7.2, 10.0) == pytest.approx(20.0)
    assert energy_wh(0.0, 100.0) == 0.0


def test_meter_only_rises() -> None:
    meter = EnergyMeter()
    readings = [meter.charge(11.0, 10.0) for _ in range(3)]
    assert readings == sorted(readings)
    assert readings[-1] == pytest.approx(91.667, abs=0.001)
    assert meter.register_wh_int == 91
    with pytest.raises(ValueError, match="must be >= 0"):
        meter.charge(-1.0, 10.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        meter.charge(1.0, -10.0)


def test_sampled_values() -> None:
    v201 = sampled_values_201(30.5, 11.0, "Sample.Periodic")
    assert v201[0] == {
        "value": 30.5,
        "context": "Sample.Periodic",
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": "Wh"},
    }
    assert v201[1]["value"] == 11000.0
    v16 = sampled_values_16(30.5, 11.0, "Sample.Periodic")
    assert v16[0]["value"] == "30.500"
    assert v16[0]["unit"] == "Wh"
    assert v16[1]["value"] == "11000.0"
