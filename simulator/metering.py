"""The energy meter of a simulated charging session."""

from __future__ import annotations

from dataclasses import dataclass

ENERGY_REGISTER = "Energy.Active.Import.Register"
ACTIVE_POWER = "Power.Active.Import"


def energy_wh(power_kw: float, seconds: float) -> float:
    """Energy delivered at a constant power over a span of time, in Wh."""
    return power_kw * 1000.0 * seconds / 3600.0


@dataclass
class EnergyMeter:
    """A cumulative import register that only ever rises, like a real meter's."""

    exact_wh: float = 0.0

    def charge(self, power_kw: float, seconds: float) -> float:
        """Advance the register by `seconds` at `power_kw`; return the new reading."""
        if power_kw < 0 or seconds < 0:
            raise ValueError("a meter only counts energy delivered: power and time must be >= 0")
        self.exact_wh += energy_wh(power_kw, seconds)
        return self.register_wh

    @property
    def register_wh(self) -> float:
        """The reading, to the mWh."""
        return round(self.exact_wh, 3)

    @property
    def register_wh_int(self) -> int:
        """The reading in whole Wh (OCPP 1.6 `meterStart`/`meterStop` are integers)."""
        return int(self.register_wh)


def sampled_values_201(
    register_wh: float, power_kw: float, context: str
) -> list[dict[str, object]]:
    """OCPP 2.0.1 `sampledValue` entries for one meter reading."""
    return [
        {
            "value": register_wh,
            "context": context,
            "measurand": ENERGY_REGISTER,
            "unitOfMeasure": {"unit": "Wh"},
        },
        {
            "value": round(power_kw * 1000.0, 1),
            "context": context,
            "measurand": ACTIVE_POWER,
            "unitOfMeasure": {"unit": "W"},
        },
    ]


def sampled_values_16(register_wh: float, power_kw: float, context: str) -> list[dict[str, str]]:
    """OCPP 1.6 `sampledValue` entries (values are strings in 1.6)."""
    return [
        {
            "value": f"{register_wh:.3f}",
            "context": context,
            "measurand": ENERGY_REGISTER,
            "unit": "Wh",
        },
        {
            "value": f"{power_kw * 1000.0:.1f}",
            "context": context,
            "measurand": ACTIVE_POWER,
            "unit": "W",
        },
    ]
