"""What the server asks, before the upgrade, whether a charge point proved its identity."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from gateway.admission import FailureLimiter, retry_after_seconds
from gateway.handshake import HandshakeRefused
from gateway.security.basic_auth import basic_password, too_many_failures, wrong_password
from gateway.security.certificates import client_certificate_refusal
from gateway.security.password_file import PasswordFile
from gateway.security.passwords import (
    PasswordHash,
    PasswordStore,
    VerifiedPasswords,
    verify_or_decoy,
)
from gateway.settings import SecurityProfile, Settings

# Slow (scrypt) checks waiting for the thread pool, at most, per worker; beyond, HTTP 503.
SLOW_CHECKS_PER_WORKER = 16


def _default_workers() -> int:
    # Leave a core to the event loop; scrypt releases the GIL while it runs.
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass
class AuthStats:
    """Counters for metrics; they only ever grow."""

    wrong_passwords: int = 0
    rate_limited_id: int = 0
    rate_limited_address: int = 0
    slow_checks_refused: int = 0


class CpAuthenticator:
    """What the server asks, before the upgrade, whether a charge point proved its identity.

    With passwords, failed checks are counted per charge point id (`by_id`) and per source
    address (`by_address`); past either allowance, attempts are refused with HTTP 429 and a
    `Retry-After` before any password is looked at. Fast hashes are checked on the event loop;
    slow (scrypt) ones on a thread pool whose queue is bounded (HTTP 503 beyond).
    """

    def __init__(
        self,
        profile: SecurityProfile,
        passwords: PasswordStore | None = None,
        *,
        workers: int | None = None,
        by_id: FailureLimiter | None = None,
        by_address: FailureLimiter | None = None,
    ) -> None:
        if profile in {SecurityProfile.BASIC, SecurityProfile.TLS_BASIC} and passwords is None:
            raise ValueError(f"security profile {profile.value} needs passwords")
        self.profile = profile
        self.passwords = passwords
        self.verified = VerifiedPasswords()
        # `is None`, not `or`: an empty limiter has length 0.
        self.by_id = by_id if by_id is not None else FailureLimiter(0, 60.0)
        self.by_address = by_address if by_address is not None else FailureLimiter(0, 60.0)
        self.stats = AuthStats()
        self._workers = workers or _default_workers()
        self._executor: ThreadPoolExecutor | None = None
        self._slow_checks = 0

    async def start(self) -> None:
        if isinstance(self.passwords, PasswordFile):
            await self.passwords.start()

    async def close(self) -> None:
        if isinstance(self.passwords, PasswordFile):
            await self.passwords.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @property
    def uses_passwords(self) -> bool:
        return self.passwords is not None

    async def check(
        self,
        cp_id: str,
        authorization: Sequence[str],
        peercert: Mapping[str, object] | None = None,
        address: str | None = None,
    ) -> None:
        """Returns when `cp_id` is who it says; raises `AuthRefused` otherwise, or
        `HandshakeRefused` (503) when too many slow checks are already waiting."""
        if self.profile is SecurityProfile.TLS_CLIENT_CERT:
            refusal = client_certificate_refusal(cp_id, peercert)
            if refusal is not None:
                raise refusal
            return
        if self.passwords is None:
            return
        self._refuse_if_limited(cp_id, address)
        password = basic_password(cp_id, authorization)
        stored = self.passwords.hash_for(cp_id)
        if stored is not None and self.verified.knows(cp_id, stored, password):
            return
        matches = (
            await self._check_slowly(stored, password)
            if stored is not None and stored.slow
            else verify_or_decoy(stored, password)
        )
        if not matches:
            self.stats.wrong_passwords += 1
            self.by_id.failed(cp_id)
            if address is not None:
                self.by_address.failed(address)
            raise wrong_password(cp_id, stored is not None)
        assert stored is not None
        self.by_id.succeeded(cp_id)
        self.verified.remember(cp_id, stored, password)

    def _refuse_if_limited(self, cp_id: str, address: str | None) -> None:
        if address is not None:
            wait = self.by_address.retry_after(address)
            if wait is not None:
                self.stats.rate_limited_address += 1
                raise too_many_failures(cp_id, "address", retry_after_seconds(wait))
        wait = self.by_id.retry_after(cp_id)
        if wait is not None:
            self.stats.rate_limited_id += 1
            raise too_many_failures(cp_id, "id", retry_after_seconds(wait))

    async def _check_slowly(self, stored: PasswordHash | None, password: bytes) -> bool:
        if self._slow_checks >= self._workers * SLOW_CHECKS_PER_WORKER:
            self.stats.slow_checks_refused += 1
            raise HandshakeRefused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the gateway has too many password checks in progress; retry later",
            )
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="password-check")
        loop = asyncio.get_running_loop()
        self._slow_checks += 1
        try:
            return await loop.run_in_executor(self._executor, verify_or_decoy, stored, password)
        finally:
            self._slow_checks -= 1


def build_authenticator(settings: Settings) -> CpAuthenticator | None:
    """The authenticator for `GATEWAY_SECURITY_PROFILE`, None for profile 0.

    Reads the password file once, so that a missing one stops the gateway at start.
    """
    profile = settings.security_profile
    if profile is SecurityProfile.NONE:
        return None
    passwords: PasswordFile | None = None
    if settings.password_file is not None:
        passwords = PasswordFile(settings.password_file, settings.password_file_poll_interval)
        passwords.load()
    window = settings.auth_failure_window
    return CpAuthenticator(
        profile,
        passwords,
        by_id=FailureLimiter(settings.auth_failures_per_id, window),
        by_address=FailureLimiter(settings.auth_failures_per_address, window),
    )


_AUTH_COUNTERS = {
    "wrong_passwords": ("ocpp_gateway_auth_wrong_passwords", "Wrong HTTP Basic passwords"),
    "rate_limited_id": (
        "ocpp_gateway_auth_rate_limited_id",
        "Attempts refused with 429: too many failed password checks for the charge point id",
    ),
    "rate_limited_address": (
        "ocpp_gateway_auth_rate_limited_address",
        "Attempts refused with 429: too many failed password checks from the source address",
    ),
    "slow_checks_refused": (
        "ocpp_gateway_auth_slow_checks_refused",
        "Attempts refused with 503: too many scrypt checks already waiting",
    ),
}


class AuthStatsCollector:
    """A prometheus_client collector over an authenticator's `stats`, read at each scrape."""

    def __init__(self, authenticator: CpAuthenticator) -> None:
        self._authenticator = authenticator

    def collect(self) -> Iterator[Metric]:
        for field_name, (name, documentation) in _AUTH_COUNTERS.items():
            value = getattr(self._authenticator.stats, field_name)
            yield CounterMetricFamily(name, documentation, value=value)
