"""Password hashes, their check and the password file's text format. Pure: no I/O.

Two schemes, both salted, both self-describing in the file:

- `$sha256$<salt>$<key>`: SHA-256 of salt and password, for passwords of `MIN_FAST_LENGTH` (16)
  characters or more. OCPP 2.0.1's `BasicAuthPassword` is 16 to 40 random characters: too much
  entropy to guess, so a slow hash buys nothing and a fast one costs microseconds per check
  (EMQX's built-in authentication also defaults to salted SHA-256). The gateway checks these on
  its event loop, so a flood of wrong passwords cannot queue up legitimate charge points.
- `$scrypt$ln=<n>,r=<r>,p=<p>$<salt>$<key>`: a slow KDF for shorter passwords (`ocpp-things
  password --force`, OCPP 1.6 keys), about 50 ms per check, run on a thread pool.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id
from gateway.registry.things_file import LineProblem

# -- password hashes ----------------------------------------------------------------------

MIN_FAST_LENGTH = 16  # OCPP 2.0.1's BasicAuthPassword: 16 to 40 characters
DEFAULT_LOG2_N = 14  # N = 16384, r = 8: 16 MiB and about 50 ms per check on one core
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_MEMORY = 256 * 1024 * 1024  # a hash asking for more is refused when the file is read
_SCRYPT = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)
_SHA256 = re.compile(r"\$sha256\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")
_FORMS = "$sha256$<salt>$<key> or $scrypt$ln=<n>,r=<r>,p=<p>$<salt>$<key>"


class PasswordHash(ABC):
    """A stored password hash: `Sha256Hash` or `ScryptHash`."""

    slow: ClassVar[bool]
    """Whether a check costs enough CPU to belong on a thread pool rather than the event loop."""

    salt: bytes
    key: bytes

    @staticmethod
    def parse(encoded: str) -> PasswordHash:
        """Raises ValueError saying what is wrong (never showing the text)."""
        if encoded.startswith("$sha256$"):
            return Sha256Hash.parse(encoded)
        if encoded.startswith("$scrypt$"):
            return ScryptHash.parse(encoded)
        raise ValueError(f"not a password hash of the form {_FORMS}")

    @abstractmethod
    def encode(self) -> str: ...

    @abstractmethod
    def derive(self, password: bytes) -> bytes: ...

    def verify(self, password: bytes) -> bool:
        """True when `password` hashes to this key; compared in constant time."""
        return hmac.compare_digest(self.derive(password), self.key)


@dataclass(frozen=True)
class Sha256Hash(PasswordHash):
    """SHA-256 of salt + password, written `$sha256$<salt>$<key>` (base64, unpadded)."""

    slow: ClassVar[bool] = False
    salt: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, encoded: str) -> Sha256Hash:
        found = _SHA256.fullmatch(encoded)
        if found is None:
            raise ValueError(f"not a password hash of the form {_FORMS}")
        salt, key = _unbase64(found[1]), _unbase64(found[2])
        if salt is None or key is None or len(salt) < 8 or len(key) != KEY_BYTES:
            raise ValueError("the salt or key is not base64 of at least 8 and exactly 32 bytes")
        return cls(salt, key)

    def encode(self) -> str:
        return f"$sha256${_base64(self.salt)}${_base64(self.key)}"

    def derive(self, password: bytes) -> bytes:
        return hashlib.sha256(self.salt + password).digest()


@dataclass(frozen=True)
class ScryptHash(PasswordHash):
    """A salted scrypt hash, written `$scrypt$ln=14,r=8,p=1$<salt>$<key>` (base64, unpadded)."""

    slow: ClassVar[bool] = True
    log2_n: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, encoded: str) -> ScryptHash:
        found = _SCRYPT.fullmatch(encoded)
        if found is None:
            raise ValueError(f"not a password hash of the form {_FORMS}")
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
            f"$scrypt$ln={self.log2_n},r={self.r},p={self.p}"
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


def uses_fast_hash(password: bytes) -> bool:
    """Whether `password` is long enough to be stored with the fast scheme."""
    return len(password) >= MIN_FAST_LENGTH


def hash_password(
    password: bytes,
    *,
    log2_n: int = DEFAULT_LOG2_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
    slow: bool | None = None,
) -> PasswordHash:
    """A new hash of `password` with a random salt (unless one is given, for tests).

    Salted SHA-256 for passwords of `MIN_FAST_LENGTH` characters or more, scrypt (with the given
    cost) for shorter ones; `slow` chooses explicitly.
    """
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if slow is None:
        slow = not uses_fast_hash(password)
    if not slow:
        return Sha256Hash(salt, hashlib.sha256(salt + password).digest())
    unkeyed = ScryptHash(log2_n, r, p, salt, b"\0" * KEY_BYTES)
    return ScryptHash(log2_n, r, p, salt, unkeyed.derive(password))


@functools.cache
def _decoy() -> PasswordHash:
    return hash_password(b"", salt=b"\0" * SALT_BYTES, slow=False)


def verify_or_decoy(stored: PasswordHash | None, password: bytes) -> bool:
    """Checks ids without a password against a decoy, so that they take as long as a wrong
    password for an id with one.

    The decoy uses the fast scheme, the one `ocpp-things password` stores by default: ids
    without a password must never cost a slow check, or anyone could make the gateway run
    scrypt for made-up ids. An id with a (short, forced) scrypt password answers more slowly,
    which tells an observer only that it has such a password.
    """
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


class PasswordStore(Protocol):
    """Where the authenticator finds a charge point's hash (a `PasswordFile`, or a test's dict)."""

    def hash_for(self, cp_id: str) -> PasswordHash | None: ...


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
