"""OCPP security profiles at the gateway: who a charge point is, checked before the upgrade.

- Profile 0: no authentication (the default).
- Profiles 1 and 2: HTTP Basic auth, user = cpId, over `ws://` (1) or `wss://` (2). Passwords are
  kept as salted scrypt hashes in a password file of `cpId:<hash>` lines; a wrong or missing
  password gets HTTP 401 with `WWW-Authenticate: Basic realm="OCPP"`.
- Profile 3: `wss://` with a client certificate signed by the configured CA (checked by TLS) whose
  subject CN is the cpId (checked here); another CN gets HTTP 403, since the certificate was
  valid and HTTP has no challenge a client could answer with another one.

The first part of this module is pure (no I/O): parsing the `Authorization` header, hashing and
verifying passwords, the password file's format and edits, matching a certificate's CN, and the
refusals. The last part does I/O: the server's TLS context, the watched password file and the
`CpAuthenticator` the server calls. Passwords and the `Authorization` header are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import os
import re
import secrets
import ssl
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Protocol

import structlog

from gateway.handshake import HandshakeRefused
from gateway.registry.file import FileVersion
from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id
from gateway.registry.things_file import LineProblem
from gateway.settings import SecurityProfile, Settings

log = structlog.get_logger(__name__)

REALM = "OCPP"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


class AuthRefused(HandshakeRefused):
    """A charge point that did not prove its identity: HTTP 401 (with a challenge) or 403.

    `reason` is the one line the charge point reads; `detail` says more for the logs only (never
    a secret).
    """

    def __init__(
        self, status: HTTPStatus, reason: str, *, detail: str, challenge: str | None = None
    ) -> None:
        super().__init__(status, reason)
        self.detail = detail
        self.challenge = challenge


def _unauthorized(reason: str, detail: str) -> AuthRefused:
    return AuthRefused(HTTPStatus.UNAUTHORIZED, reason, detail=detail, challenge=CHALLENGE)


# -- HTTP Basic credentials (profiles 1 and 2) ------------------------------------------------


def basic_password(cp_id: str, authorization: Sequence[str]) -> bytes:
    """The password from the `Authorization` header values, whose user must be `cp_id`.

    Raises `AuthRefused` (401) when the header is missing, repeated, not Basic, malformed, or
    names another user. The password stays bytes: OCPP 1.6 keys are not always text.
    """
    if not authorization:
        raise _unauthorized(
            "HTTP Basic credentials are required (user = charge point id)",
            "no Authorization header",
        )
    if len(authorization) > 1:
        raise _unauthorized(
            "send one Authorization header", f"{len(authorization)} Authorization headers"
        )
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(
            "only HTTP Basic authentication is accepted (user = charge point id)",
            f"scheme {_shown(scheme, 20)}",
        )
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _unauthorized(
            "the Authorization header is not valid HTTP Basic credentials", "not base64"
        ) from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise _unauthorized(
            "the Authorization header is not valid HTTP Basic credentials", "no colon"
        )
    if user != cp_id.encode():
        raise _unauthorized(
            f"the HTTP Basic user must be the charge point id {cp_id}",
            # Not the user itself: a client that swapped user and password would log its secret.
            "the user is not the charge point id",
        )
    return password


def wrong_password(cp_id: str, stored: bool) -> AuthRefused:
    """The same answer whether or not `cp_id` has a password, so ids cannot be probed."""
    return _unauthorized(
        f"wrong password for charge point {cp_id}",
        "wrong password" if stored else "no password stored for this charge point",
    )


# -- password hashes ----------------------------------------------------------------------

SCHEME = "scrypt"
DEFAULT_LOG2_N = 14  # N = 16384, r = 8: 16 MiB and about 50 ms per check on one core
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_MEMORY = 256 * 1024 * 1024  # a hash asking for more is refused when the file is read
_ENCODED = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)


@dataclass(frozen=True)
class PasswordHash:
    """A salted scrypt hash, written `$scrypt$ln=14,r=8,p=1$<salt>$<key>` (base64, unpadded)."""

    log2_n: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, encoded: str) -> PasswordHash:
        """Raises ValueError saying what is wrong (never showing the text)."""
        found = _ENCODED.fullmatch(encoded)
        if found is None:
            raise ValueError(
                "not a password hash of the form $scrypt$ln=<n>,r=<r>,p=<p>$<salt>$<key>"
            )
        log2_n, r, p = (int(found[index]) for index in (1, 2, 3))
        if not (1 <= log2_n <= 24 and 1 <= r <= 64 and 1 <= p <= 16):
            raise ValueError("scrypt parameters out of range (ln 1-24, r 1-64, p 1-16)")
        if _memory(log2_n, r, p) > MAX_MEMORY:
            raise ValueError(f"scrypt parameters need more than {MAX_MEMORY // 2**20} MiB")
        salt, key = _unbase64(found[4]), _unbase64(found[5])
        if salt is None or key is None or len(salt) < 8 or len(key) < 16:
            raise ValueError("the salt or key is not base64 of at least 8 and 16 bytes")
        return cls(log2_n, r, p, salt, key)

    def encode(self) -> str:
        return (
            f"${SCHEME}$ln={self.log2_n},r={self.r},p={self.p}"
            f"${_base64(self.salt)}${_base64(self.key)}"
        )

    def derive(self, password: bytes) -> bytes:
        return hashlib.scrypt(
            password,
            salt=self.salt,
            n=2**self.log2_n,
            r=self.r,
            p=self.p,
            maxmem=_memory(self.log2_n, self.r, self.p),
            dklen=len(self.key),
        )

    def verify(self, password: bytes) -> bool:
        """True when `password` hashes to this key; compared in constant time. CPU-bound."""
        return hmac.compare_digest(self.derive(password), self.key)


def hash_password(
    password: bytes,
    *,
    log2_n: int = DEFAULT_LOG2_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> PasswordHash:
    """A new hash of `password` with a random salt (unless one is given, for tests)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    unkeyed = PasswordHash(log2_n, r, p, salt, b"\0" * KEY_BYTES)
    return PasswordHash(log2_n, r, p, salt, unkeyed.derive(password))


@functools.cache
def _decoy() -> PasswordHash:
    """Checked for ids without a password, so that they take as long as a wrong password."""
    return hash_password(b"", salt=b"\0" * SALT_BYTES)


def verify_or_decoy(stored: PasswordHash | None, password: bytes) -> bool:
    if stored is None:
        _decoy().verify(password)
        return False
    return stored.verify(password)


def _memory(log2_n: int, r: int, p: int) -> int:
    # What OpenSSL allocates: 128 * r * (N + 2) for V, plus 128 * r * p for B.
    return int(128 * r * (2**log2_n + 2 + p) + 65536)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unbase64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


class VerifiedPasswords:
    """Passwords that verified, remembered as keyed HMACs, so reconnects skip scrypt.

    A reconnect storm (after a broker outage, say) would otherwise cost one scrypt per charge
    point again. Entries are keyed by cpId and the stored hash, so a changed password in the file
    is never answered from here; the HMAC key is random per process and never leaves it.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._key = secrets.token_bytes(32)
        self._limit = limit
        self._entries: dict[tuple[str, str], bytes] = {}

    def _mac(self, password: bytes) -> bytes:
        return hmac.new(self._key, password, hashlib.sha256).digest()

    def knows(self, cp_id: str, stored: PasswordHash, password: bytes) -> bool:
        remembered = self._entries.get((cp_id, stored.encode()))
        return remembered is not None and hmac.compare_digest(remembered, self._mac(password))

    def remember(self, cp_id: str, stored: PasswordHash, password: bytes) -> None:
        key = (cp_id, stored.encode())
        self._entries.pop(key, None)
        while len(self._entries) >= self._limit:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[key] = self._mac(password)

    def __len__(self) -> int:
        return len(self._entries)


# -- the password file's format -----------------------------------------------------------

PASSWORD_FILE_HEADER = (
    "# HTTP Basic passwords of charge points (OCPP security profiles 1 and 2), hashed:\n"
    "# one `cpId:<hash>` line each. Edit with `ocpp-things password <cpId>`.\n"
)


@dataclass(frozen=True)
class ParsedPasswords:
    hashes: Mapping[str, PasswordHash]
    problems: tuple[LineProblem, ...]


def _line_cp_id(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.partition(":")[0].strip()


def parse_password_file(text: str) -> ParsedPasswords:
    """Every valid `cpId:<hash>` line; a problem (naming the line, not its hash) for the others.

    A cpId given twice keeps its first line.
    """
    hashes: dict[str, PasswordHash] = {}
    first_line: dict[str, int] = {}
    problems: list[LineProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        cp_id = _line_cp_id(line)
        if cp_id is None:
            continue
        _, colon, encoded = line.strip().partition(":")
        reason: str | None = None
        if not is_valid_cp_id(cp_id):
            reason = describe_invalid_cp_id(cp_id)
        elif not colon:
            reason = "no `:` between the charge point id and the hash"
        elif cp_id in first_line:
            reason = f"{cp_id} already has a password on line {first_line[cp_id]}"
        else:
            try:
                hashes[cp_id] = PasswordHash.parse(encoded.strip())
                first_line[cp_id] = number
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            problems.append(LineProblem(number, cp_id[:60], reason))
    return ParsedPasswords(hashes, tuple(problems))


def set_password_line(text: str, cp_id: str, stored: PasswordHash) -> str:
    """`text` with `cp_id`'s line replaced where it was (or appended); others lines kept."""
    new_line = f"{cp_id}:{stored.encode()}"
    lines: list[str] = []
    replaced = False
    for line in text.splitlines(keepends=True):
        if _line_cp_id(line) != cp_id:
            lines.append(line)
        elif not replaced:
            ending = line[len(line.rstrip("\r\n")) :] or "\n"
            lines.append(new_line + ending)
            replaced = True
    if not replaced:
        if not lines:
            lines.append(PASSWORD_FILE_HEADER)
        elif not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"
        lines.append(new_line + "\n")
    return "".join(lines)


def remove_password_line(text: str, cp_id: str) -> tuple[str, bool]:
    """`text` without `cp_id`'s lines, and whether there were any."""
    kept = [line for line in text.splitlines(keepends=True) if _line_cp_id(line) != cp_id]
    return "".join(kept), len(kept) != len(text.splitlines())


# -- client certificates (profile 3) ----------------------------------------------------------


def common_names(peercert: Mapping[str, object] | None) -> list[str]:
    """The subject CNs of a certificate as `SSLSocket.getpeercert()` decodes it."""
    if not peercert:
        return []
    subject = peercert.get("subject", ())
    names: list[str] = []
    if isinstance(subject, tuple):
        for rdn in subject:
            for attribute in rdn if isinstance(rdn, tuple) else ():
                is_pair = isinstance(attribute, tuple) and len(attribute) == 2
                if is_pair and attribute[0] == "commonName":
                    names.append(str(attribute[1]))
    return names


def client_certificate_refusal(
    cp_id: str, peercert: Mapping[str, object] | None
) -> AuthRefused | None:
    """None when the certificate's only subject CN is `cp_id`; else a 403 naming what was found."""
    if not peercert:
        return AuthRefused(
            HTTPStatus.FORBIDDEN,
            "a client certificate is required (security profile 3)",
            detail="no client certificate",
        )
    names = common_names(peercert)
    if names == [cp_id]:
        return None
    if not names:
        found = "has no subject CN"
    elif len(names) == 1:
        found = f"has the subject CN {_shown(names[0], 64)}"
    else:
        found = f"has {len(names)} subject CNs ({', '.join(_shown(n, 64) for n in names[:4])})"
    return AuthRefused(
        HTTPStatus.FORBIDDEN,
        f"the client certificate {found}; it must be the charge point id {cp_id}",
        detail="client certificate CN mismatch",
    )


def _shown(text: str, limit: int) -> str:
    """Quoted, with control characters escaped and a length limit: safe in one line."""
    quoted = repr(text[:limit])
    return quoted if len(text) <= limit else quoted + "..."


# == I/O: TLS context, password file, authenticator ===========================================


class SecurityMisconfigured(Exception):
    """A TLS or password file cannot be used; the message names the setting and the problem."""


def build_server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The gateway's TLS context (TLS 1.2+), or None for plain `ws://`.

    With profile 3, client certificates are required and verified against
    `GATEWAY_TLS_CLIENT_CA_FILE` only (never the system's CAs).
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert, key = settings.tls_cert_file, settings.tls_key_file
    _check_pem("GATEWAY_TLS_CERT_FILE", cert, "CERTIFICATE-----", "PEM certificate")
    _check_pem("GATEWAY_TLS_KEY_FILE", key, "PRIVATE KEY-----", "PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def encrypted_key() -> str:
        raise SecurityMisconfigured(
            f"GATEWAY_TLS_KEY_FILE: {key} is encrypted; give the key unencrypted "
            "(protect the file instead)"
        )

    try:
        context.load_cert_chain(cert, key, password=encrypted_key)
    except ssl.SSLError as exc:
        raise SecurityMisconfigured(
            f"GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE: cannot use {cert} with {key}: "
            f"{_ssl_problem(exc)}"
        ) from None
    if settings.security_profile is SecurityProfile.TLS_CLIENT_CERT:
        ca = settings.tls_client_ca_file
        assert ca is not None  # the settings refuse profile 3 without it
        _check_pem("GATEWAY_TLS_CLIENT_CA_FILE", ca, "CERTIFICATE-----", "PEM certificate")
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise SecurityMisconfigured(
                f"GATEWAY_TLS_CLIENT_CA_FILE: cannot use {ca}: {_ssl_problem(exc)}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_pem(variable: str, path: Path, marker: str, what: str) -> None:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise SecurityMisconfigured(f"{variable}: {path} does not exist") from None
    except IsADirectoryError:
        raise SecurityMisconfigured(f"{variable}: {path} is a directory, not a file") from None
    except OSError as exc:
        raise SecurityMisconfigured(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if marker.encode() not in text:
        raise SecurityMisconfigured(f"{variable}: {path} holds no {what}")


def _ssl_problem(exc: ssl.SSLError) -> str:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return "the private key does not belong to the certificate"
    return str(exc.reason or exc).lower().replace("_", " ")


class PasswordStore(Protocol):
    def hash_for(self, cp_id: str) -> PasswordHash | None: ...


class PasswordFile:
    """The password file, read at start and again whenever it changes (checked every
    `poll_interval` seconds, like the registry file). If it later disappears or cannot be read,
    the last good passwords are kept and the problem is logged once.
    """

    def __init__(self, path: Path, poll_interval: float = 1.0) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self._hashes: Mapping[str, PasswordHash] = {}
        self._loaded: FileVersion | None = None
        self._problem: str | None = None
        self._watcher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._hashes)

    def hash_for(self, cp_id: str) -> PasswordHash | None:
        return self._hashes.get(cp_id)

    def load(self) -> None:
        """The first read; raises `SecurityMisconfigured` when the file cannot be read."""
        try:
            version, text = _read_text(self.path)
        except FileNotFoundError:
            raise SecurityMisconfigured(
                f"GATEWAY_PASSWORD_FILE: {self.path} does not exist; create it with "
                "`ocpp-things password <cpId>`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityMisconfigured(
                f"GATEWAY_PASSWORD_FILE: cannot read {self.path}: {exc}"
            ) from None
        self._use(version, text)

    async def start(self) -> None:
        if self._loaded is None:
            self.load()
        self._watcher = asyncio.create_task(self._watch(), name=f"password-file-{self.path}")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def reload_if_changed(self) -> bool:
        try:
            if FileVersion.of(os.stat(self.path)) == self._loaded:
                return False
            version, text = await asyncio.to_thread(_read_text, self.path)
        except FileNotFoundError:
            self._report_problem("missing")
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self._report_problem(f"unreadable: {exc}")
            return False
        self._use(version, text)
        return True

    def _use(self, version: FileVersion, text: str) -> None:
        parsed = parse_password_file(text)
        previous = self._hashes
        self._hashes = parsed.hashes
        self._loaded = version
        self._problem = None
        for problem in parsed.problems[:20]:
            log.warning(
                "security.password_line_skipped",
                path=str(self.path),
                line=problem.line_number,
                reason=problem.reason,
            )
        log.info(
            "security.password_file_loaded",
            path=str(self.path),
            passwords=len(parsed.hashes),
            changed=sum(
                1
                for cp_id in previous.keys() | parsed.hashes.keys()
                if previous.get(cp_id) != parsed.hashes.get(cp_id)
            ),
            skipped_lines=len(parsed.problems),
        )

    def _report_problem(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning(
                "security.password_file_kept_last_good",
                path=str(self.path),
                problem=problem,
                passwords=len(self._hashes),
            )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.reload_if_changed()
            except Exception:  # the last good passwords stay; the watcher must go on
                log.exception("security.password_file_check_failed", path=str(self.path))


def _read_text(path: Path) -> tuple[FileVersion, str]:
    with path.open(encoding="utf-8-sig") as file:
        return FileVersion.of(os.fstat(file.fileno())), file.read()


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
