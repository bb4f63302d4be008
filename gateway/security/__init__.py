"""OCPP security profiles at the gateway: who a charge point is, checked before the upgrade.

- Profile 0: no authentication (the default).
- Profiles 1 and 2: HTTP Basic auth, user = cpId, over `ws://` (1) or `wss://` (2). Passwords are
  kept as salted hashes (SHA-256 for passwords of 16 characters or more, scrypt for shorter
  ones) in a password file of `cpId:<hash>` lines; a wrong or missing password gets HTTP 401
  with `WWW-Authenticate: Basic realm="OCPP"`, and too many wrong ones per id or per source
  address get HTTP 429 with `Retry-After`.
- Profile 3: `wss://` with a client certificate signed by the configured CA (checked by TLS: one
  that does not verify fails the handshake) whose subject CN is the cpId (checked here). No
  certificate gets HTTP 401, so that health checks without one still reach /health and /metrics;
  another CN gets HTTP 403, since the certificate was valid and HTTP has no challenge a client
  could answer with another one.

The modules, pure ones first:

- `errors`: `AuthRefused` (an HTTP refusal before the upgrade) and `SecurityMisconfigured` (a
  file unusable at start).
- `basic_auth`: parsing the `Authorization` header, and its 401 refusals.
- `passwords`: hashing and verifying passwords, the decoy, the memory of verified passwords, and
  the password file's format and edits.
- `password_file`: the password file of a running gateway, read again when it changes.
- `certificates`: matching a client certificate's CN, and the server's TLS context.
- `authenticator`: `CpAuthenticator`, what the server calls, and `build_authenticator`.

Passwords and the `Authorization` header are never logged.
"""

from __future__ import annotations

from gateway.security.authenticator import AuthStatsCollector, CpAuthenticator, build_authenticator
from gateway.security.basic_auth import CHALLENGE, REALM, basic_password, wrong_password
from gateway.security.certificates import (
    build_server_ssl_context,
    client_certificate_refusal,
    common_names,
)
from gateway.security.errors import AuthRefused, SecurityMisconfigured
from gateway.security.password_file import PasswordFile
from gateway.security.passwords import (
    MIN_FAST_LENGTH,
    PASSWORD_FILE_HEADER,
    ParsedPasswords,
    PasswordHash,
    PasswordStore,
    ScryptHash,
    Sha256Hash,
    VerifiedPasswords,
    hash_password,
    parse_password_file,
    remove_password_line,
    set_password_line,
    verify_or_decoy,
)

__all__ = [
    "CHALLENGE",
    "MIN_FAST_LENGTH",
    "PASSWORD_FILE_HEADER",
    "REALM",
    "AuthRefused",
    "AuthStatsCollector",
    "CpAuthenticator",
    "ParsedPasswords",
    "PasswordFile",
    "PasswordHash",
    "PasswordStore",
    "ScryptHash",
    "SecurityMisconfigured",
    "Sha256Hash",
    "VerifiedPasswords",
    "basic_password",
    "build_authenticator",
    "build_server_ssl_context",
    "client_certificate_refusal",
    "common_names",
    "hash_password",
    "parse_password_file",
    "remove_password_line",
    "set_password_line",
    "verify_or_decoy",
    "wrong_password",
]
