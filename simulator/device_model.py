"""The few configuration variables a CSMS can read and write on the simulated charge point.

OCPP 2.0.1 addresses them as (component, variable) through GetVariables/SetVariables;
OCPP 1.6 as flat keys through GetConfiguration/ChangeConfiguration. Both views share one store,
so a heartbeat interval set either way is the one the heartbeat loop uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

OCPP_COMM = "OCPPCommCtrlr"
SAMPLED_DATA = "SampledDataCtrlr"
SECURITY = "SecurityCtrlr"
AUTH = "AuthCtrlr"
CHARGING_STATION = "ChargingStation"

HEARTBEAT_INTERVAL = (OCPP_COMM, "HeartbeatInterval")
METER_INTERVAL = (SAMPLED_DATA, "TxUpdatedInterval")
RETRY_WAIT_MINIMUM = (OCPP_COMM, "RetryBackOffWaitMinimum")
RETRY_RANDOM_RANGE = (OCPP_COMM, "RetryBackOffRandomRange")
RETRY_REPEAT_TIMES = (OCPP_COMM, "RetryBackOffRepeatTimes")


class GetStatus(StrEnum):
    """`GetVariableStatusEnumType`."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetStatus(StrEnum):
    """`SetVariableStatusEnumType`."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


class ConfigurationStatus(StrEnum):
    """OCPP 1.6 `ConfigurationStatus`."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


def _positive_integer(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) >= 1


def _non_negative_integer(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _boolean(text: str) -> bool:
    return text in {"true", "false"}


@dataclass(frozen=True)
class VariableSpec:
    writable: bool
    accepts: Callable[[str], bool] = _positive_integer
    key_16: str | None = None


_SPECS: dict[tuple[str, str], VariableSpec] = {
    HEARTBEAT_INTERVAL: VariableSpec(writable=True, key_16="HeartbeatInterval"),
    METER_INTERVAL: VariableSpec(writable=True, key_16="MeterValueSampleInterval"),
    RETRY_WAIT_MINIMUM: VariableSpec(writable=True, accepts=_non_negative_integer),
    RETRY_RANDOM_RANGE: VariableSpec(writable=True, accepts=_non_negative_integer),
    RETRY_REPEAT_TIMES: VariableSpec(writable=True, accepts=_non_negative_integer),
    (AUTH, "AuthorizeRemoteStart"): VariableSpec(
        writable=True, accepts=_boolean, key_16="AuthorizeRemoteTxRequests"
    ),
    (SECURITY, "Identity"): VariableSpec(writable=False),
    (SECURITY, "SecurityProfile"): VariableSpec(writable=False),
    (CHARGING_STATION, "Model"): VariableSpec(writable=False),
    (CHARGING_STATION, "VendorName"): VariableSpec(writable=False),
    (CHARGING_STATION, "SerialNumber"): VariableSpec(writable=False),
    ("EVSE", "NumberOfConnectors"): VariableSpec(writable=False, key_16="NumberOfConnectors"),
}
_KEYS_16 = {spec.key_16: name for name, spec in _SPECS.items() if spec.key_16 is not None}


class DeviceModel:
    """Current values, as strings (the OCPP wire type of both versions)."""

    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        missing = set(_SPECS) - set(values)
        if missing:
            raise ValueError(f"device model lacks values for {sorted(missing)}")
        self._values = dict(values)

    # -- OCPP 2.0.1 view ------------------------------------------------------------------------

    def get(
        self, component: str, variable: str, attribute_type: str = "Actual"
    ) -> tuple[GetStatus, str | None]:
        status = self._lookup(component, variable, attribute_type)
        if status is not None:
            return GetStatus(status), None
        return GetStatus.ACCEPTED, self._values[(component, variable)]

    def set(
        self, component: str, variable: str, value: str, attribute_type: str = "Actual"
    ) -> SetStatus:
        status = self._lookup(component, variable, attribute_type)
        if status is not None:
            return SetStatus(status)
        spec = _SPECS[(component, variable)]
        if not spec.writable or not spec.accepts(value):
            return SetStatus.REJECTED
        self._values[(component, variable)] = value
        return SetStatus.ACCEPTED

    def _lookup(self, component: str, variable: str, attribute_type: str) -> str | None:
        """None when the variable exists with this attribute type, else the status to answer."""
        if not any(name[0] == component for name in _SPECS):
            return "UnknownComponent"
        if (component, variable) not in _SPECS:
            return "UnknownVariable"
        if attribute_type != "Actual":
            return "NotSupportedAttributeType"
        return None

    # -- OCPP 1.6 view --------------------------------------------------------------------------

    def configuration_16(self, keys: list[str] | None) -> tuple[list[dict[str, object]], list[str]]:
        """GetConfiguration: (known keys with readonly/value, unknown keys)."""
        wanted = keys if keys else list(_KEYS_16)
        known: list[dict[str, object]] = []
        unknown: list[str] = []
        for key in wanted:
            name = _KEYS_16.get(key)
            if name is None:
                unknown.append(key)
                continue
            known.append(
                {"key": key, "readonly": not _SPECS[name].writable, "value": self._values[name]}
            )
        return known, unknown

    def change_16(self, key: str, value: str) -> ConfigurationStatus:
        name = _KEYS_16.get(key)
        if name is None:
            return ConfigurationStatus.NOT_SUPPORTED
        status = self.set(*name, value)
        return (
            ConfigurationStatus.ACCEPTED
            if status is SetStatus.ACCEPTED
            else ConfigurationStatus.REJECTED
        )

    # -- typed reads for the simulator itself ---------------------------------------------------

    def assign(self, name: tuple[str, str], value: float) -> None:
        """A value the station sets itself (from the command line or a boot answer); unlike a
        CSMS write it may be fractional."""
        if name not in _SPECS:
            raise KeyError(f"no variable {name} in the device model")
        self._values[name] = format_number(value)

    def number(self, name: tuple[str, str]) -> float:
        return float(self._values[name])

    def flag(self, name: tuple[str, str]) -> bool:
        return self._values[name] == "true"


def format_number(value: float) -> str:
    """`10` for 10.0, `0.5` for 0.5: whole numbers the way OCPP integers look."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def initial_device_model(
    *,
    cp_id: str,
    model: str,
    vendor: str,
    serial: str,
    heartbeat_interval: float,
    meter_interval: float,
    security_profile: int,
    retry_wait_minimum: float,
    retry_random_range: float,
    retry_repeat_times: int,
) -> DeviceModel:
    """The model at power-up. Intervals from the command line may be fractional (quick tests);
    a CSMS can only write whole seconds, as OCPP types them."""
    return DeviceModel(
        {
            HEARTBEAT_INTERVAL: format_number(heartbeat_interval),
            METER_INTERVAL: format_number(meter_interval),
            RETRY_WAIT_MINIMUM: format_number(retry_wait_minimum),
            RETRY_RANDOM_RANGE: format_number(retry_random_range),
            RETRY_REPEAT_TIMES: str(retry_repeat_times),
            (AUTH, "AuthorizeRemoteStart"): "true",
            (SECURITY, "Identity"): cp_id,
            (SECURITY, "SecurityProfile"): str(security_profile),
            (CHARGING_STATION, "Model"): model,
            (CHARGING_STATION, "VendorName"): vendor,
            (CHARGING_STATION, "SerialNumber"): serial,
            ("EVSE", "NumberOfConnectors"): "1",
        }
    )
