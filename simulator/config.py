"""What one simulated charge point is asked to do, and what it remembers across connections."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.backoff import RetryBackOff
from simulator.device_model import DeviceModel, initial_device_model
from simulator.dial import TlsFiles
from simulator.identity import StationIdentity
from simulator.metering import EnergyMeter

DEFAULT_HEARTBEAT_INTERVAL = 10.0


@dataclass(frozen=True)
class ChargingSession:
    """How a charging session goes, whether `--scenario` or the CSMS started it."""

    power_kw: float = 11.0
    meter_interval: float = 10.0
    meter_samples: int = 6
    id_token: str = "04A1B2C3D4E5F6"


@dataclass(frozen=True)
class StationConfig:
    cp_id: str
    url: str
    ocpp_version: str = "2.0.1"
    identity: StationIdentity = field(default_factory=StationIdentity)
    password: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    heartbeat_interval: float | None = None
    """Overrides the interval the CSMS returns; None follows the CSMS."""
    heartbeats: int | None = None
    """Stop after this many heartbeats (and the scenario, if any); None runs until stopped."""
    scenario: bool = False
    """Run one charging session right after the boot."""
    session: ChargingSession = field(default_factory=ChargingSession)
    reconnect: RetryBackOff | None = None
    """Re-dial with this back-off after a refusal or a drop; None exits instead."""
    call_timeout: float = 30.0
    open_timeout: float = 10.0
    compression: bool = True

    @property
    def security_profile(self) -> int:
        """OCPP security profile implied by the options: 1 basic auth, 2 TLS + basic, 3 mTLS."""
        if self.tls.client_cert:
            return 3
        if self.url.startswith("wss:"):
            return 2
        return 1


@dataclass
class StationState:
    """Survives reconnects; a reboot (Reset) clears `boot_accepted`."""

    model: DeviceModel
    meter: EnergyMeter = field(default_factory=EnergyMeter)
    boot_accepted: bool = False
    boot_reason: str = "PowerUp"
    connector_available: bool = True
    scenario_started: bool = False
    heartbeats_sent: int = 0

    @classmethod
    def initial(cls, config: StationConfig) -> StationState:
        backoff = config.reconnect or RetryBackOff()
        model = initial_device_model(
            cp_id=config.cp_id,
            model=config.identity.model,
            vendor=config.identity.vendor,
            serial=config.identity.serial,
            heartbeat_interval=config.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL,
            meter_interval=config.session.meter_interval,
            security_profile=config.security_profile,
            retry_wait_minimum=backoff.wait_minimum,
            retry_random_range=backoff.random_range,
            retry_repeat_times=backoff.repeat_times,
        )
        return cls(model=model)
