"""What the server asks, before the upgrade, whether a charge point proved its identity."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from gateway.security.basic_auth import basic_password, wrong_password
from gateway.security.certificates import client_certificate_refusal
from gateway.security.password_file import PasswordFile
from gateway.security.passwords import PasswordStore, VerifiedPasswords, verify_or_decoy
from gateway.settings import SecurityProfile, Settings


def _default_workers() -> int:
    # Leave a core to the event loop; scrypt releases the GIL while it runs.
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class CpAuthenticator:
    """What the server asks, before the upgrade, whether a charge point proved its identity."""

    def __init__(
        self,
        profile: SecurityProfile,
        passwords: PasswordStore | None = None,
        *,
        workers: int | None = None,
    ) -> None:
        if profile in {SecurityProfile.BASIC, SecurityProfile.TLS_BASIC} and passwords is None:
            raise ValueError(f"security profile {profile.value} needs passwords")
        self.profile = profile
        self.passwords = passwords
        self.verified = VerifiedPasswords()
        self._workers = workers or _default_workers()
        self._executor: ThreadPoolExecutor | None = None

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
    ) -> None:
        """Returns when `cp_id` is who it says; raises `AuthRefused` otherwise."""
        if self.profile is SecurityProfile.TLS_CLIENT_CERT:
            refusal = client_certificate_refusal(cp_id, peercert)
            if refusal is not None:
                raise refusal
            return
        if self.passwords is None:
            return
        password = basic_password(cp_id, authorization)
        stored = self.passwords.hash_for(cp_id)
        if stored is not None and self.verified.knows(cp_id, stored, password):
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="password-check")
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._executor, verify_or_decoy, stored, password):
            raise wrong_password(cp_id, stored is not None)
        assert stored is not None
        self.verified.remember(cp_id, stored, password)


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
    return CpAuthenticator(profile, passwords)
