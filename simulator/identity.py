"""Who the simulated charge point says it is in its BootNotification."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

DEFAULT_MODEL = "ABC 123 XYZ"
DEFAULT_VENDOR = "Acme Electrical Systems"
DEFAULT_FIRMWARE = "10.9.8.ABC"
DEFAULT_SERIAL = "CP1234567890A01"
DEFAULT_ICCID = "891004234814455936F"
DEFAULT_IMSI = "310410123456789"


@dataclass(frozen=True)
class StationIdentity:
    """Hardware attributes reported at boot (they end up in the CP's device shadow)."""

    model: str = DEFAULT_MODEL
    vendor: str = DEFAULT_VENDOR
    firmware: str = DEFAULT_FIRMWARE
    serial: str = DEFAULT_SERIAL
    iccid: str = DEFAULT_ICCID
    imsi: str = DEFAULT_IMSI


# Longest values the OCPP schemas allow, per field.
LIMITS = {
    "2.1": {"model": 20, "vendor": 50, "firmware": 50, "serial": 25, "iccid": 20, "imsi": 20},
    "2.0.1": {"model": 20, "vendor": 50, "firmware": 50, "serial": 25, "iccid": 20, "imsi": 20},
    "1.6": {"model": 20, "vendor": 20, "firmware": 50, "serial": 25, "iccid": 20, "imsi": 20},
}


def identity_problems(identity: StationIdentity, ocpp_version: str) -> list[str]:
    """What the CSMS would reject as too long, e.g. `model is 23 characters; OCPP 1.6 ...`."""
    problems = []
    for name, limit in LIMITS[ocpp_version].items():
        value: str = getattr(identity, name)
        if len(value) > limit:
            problems.append(
                f"{name} {value!r} is {len(value)} characters; "
                f"OCPP {ocpp_version} allows at most {limit}"
            )
    return problems


def for_version(identity: StationIdentity, ocpp_version: str) -> StationIdentity:
    """OCPP 1.6 allows 20 characters of vendor name: shorten the default one to fit."""
    if ocpp_version == "1.6" and identity.vendor == DEFAULT_VENDOR:
        return replace(identity, vendor=DEFAULT_VENDOR[: LIMITS["1.6"]["vendor"]])
    return identity


def charging_station_201(identity: StationIdentity) -> dict[str, Any]:
    """The OCPP 2.0.1 `chargingStation` object, keys in the order users know from the logs."""
    return {
        "model": identity.model,
        "vendorName": identity.vendor,
        "firmwareVersion": identity.firmware,
        "serialNumber": identity.serial,
        "modem": {"iccid": identity.iccid, "imsi": identity.imsi},
    }


def boot_payload_201(identity: StationIdentity, reason: str = "PowerUp") -> dict[str, Any]:
    return {"chargingStation": charging_station_201(identity), "reason": reason}


def boot_payload_16(identity: StationIdentity) -> dict[str, Any]:
    """The OCPP 1.6 BootNotification.req payload (1.6 has no boot reason)."""
    return {
        "chargePointModel": identity.model,
        "chargePointVendor": identity.vendor,
        "chargePointSerialNumber": identity.serial,
        "firmwareVersion": identity.firmware,
        "iccid": identity.iccid,
        "imsi": identity.imsi,
    }
