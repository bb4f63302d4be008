"""OCPP security profiles: Basic credentials, password hashes and the password file, client
certificate CNs, the refusals, the security settings, the TLS context and `ocpp-things password`."""

from __future__ import annotations

import base64
import io
import ssl
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from gateway.admission import FailureLimiter
from gateway.handshake import HandshakeRefused
from gateway.registry import things_cli
from gateway.security import (
    CHALLENGE,
    PASSWORD_FILE_HEADER,
    AuthRefused,
    CpAuthenticator,
    PasswordFile,
    PasswordHash,
    ScryptHash,
    SecurityMisconfigured,
    Sha256Hash,
    VerifiedPasswords,
    basic_password,
    build_authenticator,
    build_server_ssl_context,
    client_certificate_refusal,
    common_names,
    hash_password,
    parse_password_file,
    remove_password_line,
    set_password_line,
    verify_or_decoy,
)
from gateway.security.authenticator import SLOW_CHECKS_PER_WORKER
from gateway.settings import SecurityProfile, Settings
from tests.support.clock import FakeClock
from tests.support.tls import Pki, make_pki

CHEAP = {"log2_n": 4, "r": 1, "p": 1}  # fast hashes for tests; the format is the same


def header(user: str | bytes, password: str | bytes) -> str:
    user = user.encode() if isinstance(user, str) else user
    password = password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(user + b":" + password).decode()


# -- Basic credentials --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "password"),
    [
        ([header("CP1", "secret")], b"secret"),
        ([header("CP1", "with:colons")], b"with:colons"),
        ([header("CP1", b"\xff\x00raw")], b"\xff\x00raw"),
        ([header("CP1", "")], b""),
        (["basic " + header("CP1", "x").split()[1]], b"x"),
        (["  Basic   " + header("CP1", "x").split()[1] + " "], b"x"),
    ],
)
def test_basic_password(authorization: list[str], password: bytes) -> None:
    assert basic_password("CP1", authorization) == password


@pytest.mark.parametrize(
    ("authorization", "reason", "detail"),
    [
        ([], "HTTP Basic credentials are required (user = charge point id)", "no Authorization"),
        ([header("CP1", "a"), header("CP1", "a")], "send one Authorization header", "2 "),
        (["Bearer abc"], "only HTTP Basic authentication is accepted", "scheme 'Bearer'"),
        (["Basic"], "not valid HTTP Basic credentials", "no colon"),
        (["Basic !!!"], "not valid HTTP Basic credentials", "not base64"),
        (["Basic " + base64.b64encode(b"CP1").decode()], "not valid HTTP Basic", "no colon"),
        ([header("CP2", "a")], "the HTTP Basic user must be the charge point id CP1", "the user"),
        ([header("cp1", "a")], "the HTTP Basic user must be the charge point id CP1", "the user"),
        ([header("", "a")], "the HTTP Basic user must be the charge point id CP1", "the user"),
    ],
)
def test_basic_refusals_are_401_with_a_challenge(
    authorization: list[str], reason: str, detail: str
) -> None:
    with pytest.raises(AuthRefused) as refused:
        basic_password("CP1", authorization)
    assert refused.value.status is HTTPStatus.UNAUTHORIZED
    assert refused.value.challenge == CHALLENGE == 'Basic realm="OCPP", charset="UTF-8"'
    assert reason in refused.value.reason
    assert detail in refused.value.detail
    assert "\n" not in refused.value.reason


def test_refusals_never_carry_the_password() -> None:
    for authorization in (
        [header("CP2", "hunter22")],
        [header("hunter22", "CP1")],  # user and password swapped
        [header("CP1", "hunter22") + "!"],
    ):
        with pytest.raises(AuthRefused) as refused:
            basic_password("CP1", authorization)
        assert "hunter22" not in refused.value.reason + refused.value.detail


# -- password hashes ----------------------------------------------------------------------


def test_hash_verifies_its_password_only() -> None:
    stored = hash_password(b"correct horse", **CHEAP)
    assert stored.verify(b"correct horse")
    assert not stored.verify(b"correct hors")
    assert not stored.verify(b"")


def test_each_hash_has_its_own_salt() -> None:
    first, second = (hash_password(b"same", **CHEAP) for _ in range(2))
    assert first.salt != second.salt and first.key != second.key
    assert len(first.salt) == 16 and len(first.key) == 32


def test_encoding_is_self_describing_and_round_trips() -> None:
    stored = hash_password(b"pw", salt=b"0123456789abcdef", **CHEAP)
    encoded = stored.encode()
    assert encoded.startswith("$scrypt$ln=4,r=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$")
    assert PasswordHash.parse(encoded) == stored
    assert PasswordHash.parse(encoded).verify(b"pw")
    assert "pw" not in repr(stored) and "MDEy" not in repr(stored)


def test_default_cost() -> None:
    stored = hash_password(b"pw")
    assert stored.encode().startswith("$scrypt$ln=14,r=8,p=1$")


def test_passwords_of_16_characters_or_more_get_the_fast_salted_sha256() -> None:
    password = b"0123456789abcdef"
    stored = hash_password(password, salt=b"0123456789abcdef")
    assert isinstance(stored, Sha256Hash) and not stored.slow
    encoded = stored.encode()
    assert encoded.startswith("$sha256$MDEyMzQ1Njc4OWFiY2RlZg$")
    assert PasswordHash.parse(encoded) == stored
    assert stored.verify(password) and not stored.verify(password[:-1])
    assert isinstance(hash_password(password[:-1]), ScryptHash)  # 15: scrypt
    assert isinstance(hash_password(b"x", slow=False), Sha256Hash)  # chosen explicitly


def test_a_file_mixing_both_schemes_verifies_each() -> None:
    long, short = b"a long random password", b"short"
    text = set_password_line("", "CP1", hash_password(long))
    text = set_password_line(text, "CP2", hash_password(short, **CHEAP))
    parsed = parse_password_file(text)
    assert not parsed.problems
    assert parsed.hashes["CP1"].verify(long) and parsed.hashes["CP2"].verify(short)
    assert (parsed.hashes["CP1"].slow, parsed.hashes["CP2"].slow) == (False, True)


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        ("plain-text-password", "not a password hash"),
        ("$pbkdf2-sha256$i=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "not a password hash"),
        ("$scrypt$ln=14,r=8,p=1$c2FsdHNhbHQ", "not a password hash"),
        ("$scrypt$ln=0,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "out of range"),
        ("$scrypt$ln=25,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "out of range"),
        ("$scrypt$ln=20,r=64,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "more than 256 MiB"),
        ("$scrypt$ln=14,r=8,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5", "at least 8 and 16 bytes"),
        ("$scrypt$ln=14,r=8,p=1$c2FsdHNhbHQ$a2V5", "at least 8 and 16 bytes"),
        ("$scrypt$ln=14,r=8,p=1$c$a2V5a2V5a2V5a2V5a2V5a2V5", "at least 8 and 16 bytes"),
        ("$sha256$c2FsdHNhbHQ", "not a password hash"),
        ("$sha256$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "exactly 32 bytes"),
        ("$sha256$c2FsdA$" + "A" * 43, "at least 8 and exactly 32 bytes"),
    ],
)
def test_bad_hashes_are_refused_with_the_reason(encoded: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        PasswordHash.parse(encoded)
    assert encoded not in str(refused.value)


def test_an_id_without_a_password_is_checked_against_a_decoy() -> None:
    assert verify_or_decoy(None, b"") is False
    assert verify_or_decoy(None, b"anything") is False
    stored = hash_password(b"pw", **CHEAP)
    assert verify_or_decoy(stored, b"pw") is True


def test_verified_passwords_remember_the_cp_its_hash_and_its_password() -> None:
    verified = VerifiedPasswords(limit=2)
    stored = hash_password(b"pw", **CHEAP)
    assert not verified.knows("CP1", stored, b"pw")
    verified.remember("CP1", stored, b"pw")
    assert verified.knows("CP1", stored, b"pw")
    assert not verified.knows("CP1", stored, b"other")
    assert not verified.knows("CP2", stored, b"pw")
    assert not verified.knows("CP1", hash_password(b"pw", **CHEAP), b"pw")  # password changed
    verified.remember("CP2", stored, b"pw")
    verified.remember("CP3", stored, b"pw")
    assert len(verified) == 2
    assert not verified.knows("CP1", stored, b"pw")  # the oldest went first


# -- the password file --------------------------------------------------------------------


def test_password_file_lines() -> None:
    cp1, cp2 = (hash_password(p, **CHEAP) for p in (b"one", b"two"))
    text = (
        "# comment\n\n"
        f"CP1:{cp1.encode()}\n"
        f"  CP2 : {cp2.encode()}  \n"
        f"CP+1:{cp1.encode()}\n"
        "CP3\n"
        "CP4:$scrypt$nonsense\n"
        f"CP1:{cp2.encode()}\n"
    )
    parsed = parse_password_file(text)
    assert dict(parsed.hashes) == {"CP1": cp1, "CP2": cp2}
    assert [(p.line_number, p.text) for p in parsed.problems] == [
        (5, "CP+1"),
        (6, "CP3"),
        (7, "CP4"),
        (8, "CP1"),
    ]
    reasons = [p.reason for p in parsed.problems]
    assert "not allowed: '+'" in reasons[0]
    assert reasons[1] == "no `:` between the charge point id and the hash"
    assert reasons[2].startswith("not a password hash")
    assert reasons[3] == "CP1 already has a password on line 3"


def test_setting_a_password_appends_or_replaces_in_place() -> None:
    first, second = (hash_password(p, **CHEAP) for p in (b"one", b"two"))
    text = set_password_line("", "CP1", first)
    assert text == PASSWORD_FILE_HEADER + f"CP1:{first.encode()}\n"
    text = "# depot\r\nCP1:old\r\nCP9:keep\r\nCP1:duplicate\r\n"
    assert set_password_line(text, "CP1", second) == (
        f"# depot\r\nCP1:{second.encode()}\r\nCP9:keep\r\n"
    )
    assert set_password_line("CP9:keep", "CP2", first) == f"CP9:keep\nCP2:{first.encode()}\n"


def test_removing_a_password() -> None:
    assert remove_password_line("# x\nCP1:a\nCP2:b\nCP1:c\n", "CP1") == ("# x\nCP2:b\n", True)
    assert remove_password_line("# x\nCP2:b\n", "CP1") == ("# x\nCP2:b\n", False)


# -- client certificates ------------------------------------------------------------------


def peercert(*names: tuple[str, str]) -> dict[str, Any]:
    return {"subject": tuple((name,) for name in names), "issuer": ((("commonName", "CA"),),)}


def test_common_names() -> None:
    cert = peercert(("countryName", "DE"), ("commonName", "CP1"), ("organizationName", "CPO"))
    assert common_names(cert) == ["CP1"]
    assert common_names(None) == []
    assert common_names({}) == []
    assert common_names({"subject": "nonsense"}) == []


def test_a_certificate_whose_cn_is_the_cp_id_is_admitted() -> None:
    assert client_certificate_refusal("CP1", peercert(("commonName", "CP1"))) is None


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        (
            peercert(("commonName", "CP2")),
            "the client certificate has the subject CN 'CP2'; it must be the charge point id CP1",
        ),
        (
            peercert(("organizationName", "CPO")),
            "the client certificate has no subject CN; it must be the charge point id CP1",
        ),
        (
            peercert(("commonName", "CP1"), ("commonName", "CP2")),
            "the client certificate has 2 subject CNs ('CP1', 'CP2'); it must be the charge "
            "point id CP1",
        ),
        (
            peercert(("commonName", "bad\r\nline")),
            "the client certificate has the subject CN 'bad\\r\\nline'; it must be the charge "
            "point id CP1",
        ),
    ],
)
def test_other_certificates_are_refused_with_403_naming_the_cn(
    cert: dict[str, Any] | None, reason: str
) -> None:
    refusal = client_certificate_refusal("CP1", cert)
    assert refusal is not None
    assert (refusal.status, refusal.reason, refusal.challenge) == (
        HTTPStatus.FORBIDDEN,
        reason,
        None,
    )


@pytest.mark.parametrize("cert", [None, {}])
def test_no_certificate_is_refused_with_401_without_a_challenge(
    cert: dict[str, Any] | None,
) -> None:
    refusal = client_certificate_refusal("CP1", cert)
    assert refusal is not None
    assert (refusal.status, refusal.challenge, refusal.detail) == (
        HTTPStatus.UNAUTHORIZED,
        None,
        "no client certificate",
    )
    assert refusal.reason == (
        "security profile 3: this gateway needs a client certificate whose CN is the charge "
        "point id CP1"
    )


def test_a_long_cn_is_shortened() -> None:
    refusal = client_certificate_refusal("CP1", peercert(("commonName", "X" * 500)))
    assert refusal is not None and len(refusal.reason) < 150
    assert "'" + "X" * 64 + "'..." in refusal.reason


# -- the authenticator --------------------------------------------------------------------


class Passwords:
    def __init__(self, **passwords: bytes) -> None:
        self.hashes = {cp_id: hash_password(pw, **CHEAP) for cp_id, pw in passwords.items()}

    def hash_for(self, cp_id: str) -> PasswordHash | None:
        return self.hashes.get(cp_id)


async def test_authenticator_checks_passwords_and_remembers_good_ones() -> None:
    authenticator = CpAuthenticator(SecurityProfile.BASIC, Passwords(CP1=b"pw"), workers=1)
    try:
        await authenticator.check("CP1", [header("CP1", "pw")])
        assert len(authenticator.verified) == 1
        await authenticator.check("CP1", [header("CP1", "pw")])  # from memory this time
        for cp_id, password, detail in [
            ("CP1", "wrong", "wrong password"),
            ("CP2", "pw", "no password stored for this charge point"),
        ]:
            with pytest.raises(AuthRefused) as refused:
                await authenticator.check(cp_id, [header(cp_id, password)])
            assert refused.value.status is HTTPStatus.UNAUTHORIZED
            assert refused.value.reason == f"wrong password for charge point {cp_id}"
            assert refused.value.detail == detail
        assert len(authenticator.verified) == 1
    finally:
        await authenticator.close()


async def test_authenticator_for_client_certificates_ignores_passwords() -> None:
    authenticator = CpAuthenticator(SecurityProfile.TLS_CLIENT_CERT)
    await authenticator.check("CP1", [], peercert(("commonName", "CP1")))
    with pytest.raises(AuthRefused) as refused:
        await authenticator.check("CP1", [header("CP1", "pw")], peercert(("commonName", "CP2")))
    assert refused.value.status is HTTPStatus.FORBIDDEN
    with pytest.raises(AuthRefused) as refused:
        await authenticator.check("CP1", [header("CP1", "pw")], None)  # Basic auth is no way in
    assert refused.value.status is HTTPStatus.UNAUTHORIZED


def test_password_profiles_need_passwords() -> None:
    with pytest.raises(ValueError, match="needs passwords"):
        CpAuthenticator(SecurityProfile.TLS_BASIC)


# -- settings -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_ambient_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECURITY_PROFILE", "PASSWORD_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"):
        monkeypatch.delenv(f"GATEWAY_{name}", raising=False)
    monkeypatch.delenv("GATEWAY_TLS_CLIENT_CA_FILE", raising=False)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_default_is_profile_0_without_tls() -> None:
    default = settings()
    assert default.security_profile is SecurityProfile.NONE
    assert build_server_ssl_context(default) is None
    assert build_authenticator(default) is None


def test_profile_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECURITY_PROFILE", "3")
    monkeypatch.setenv("GATEWAY_TLS_CERT_FILE", "c.pem")
    monkeypatch.setenv("GATEWAY_TLS_KEY_FILE", "k.pem")
    monkeypatch.setenv("GATEWAY_TLS_CLIENT_CA_FILE", "ca.pem")
    assert settings().security_profile is SecurityProfile.TLS_CLIENT_CERT


TLS = {"tls_cert_file": "c.pem", "tls_key_file": "k.pem"}


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"security_profile": 4}, "security_profile"),
        ({"tls_cert_file": "c.pem"}, "GATEWAY_TLS_CERT_FILE is set but GATEWAY_TLS_KEY_FILE"),
        ({"tls_key_file": "k.pem"}, "GATEWAY_TLS_KEY_FILE is set but GATEWAY_TLS_CERT_FILE"),
        ({"password_file": "p"}, "GATEWAY_PASSWORD_FILE is set but GATEWAY_SECURITY_PROFILE=0"),
        ({"tls_client_ca_file": "ca"}, "with GATEWAY_SECURITY_PROFILE=3 only"),
        ({"security_profile": 1}, "GATEWAY_SECURITY_PROFILE=1 checks passwords: set GATEWAY_P"),
        ({"security_profile": 1, "password_file": "p", **TLS}, "with GATEWAY_TLS_CERT_FILE it"),
        ({"security_profile": 2, "password_file": "p"}, "=2 serves wss://: set GATEWAY_TLS_C"),
        ({"security_profile": 2, **TLS}, "GATEWAY_SECURITY_PROFILE=2 checks passwords"),
        ({"security_profile": 3, **TLS}, "=3 checks client certificates: set GATEWAY_TLS_CLIE"),
        ({"security_profile": 3, "tls_client_ca_file": "ca"}, "=3 serves wss://"),
        (
            {"security_profile": 3, "tls_client_ca_file": "ca", "password_file": "p", **TLS},
            "GATEWAY_PASSWORD_FILE is set but GATEWAY_SECURITY_PROFILE=3 does not check",
        ),
    ],
)
def test_contradictory_security_settings_are_refused(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("?", r"\?")):
        settings(**values)


@pytest.mark.parametrize(
    "values",
    [
        {"security_profile": 0, **TLS},
        {"security_profile": 1, "password_file": "p"},
        {"security_profile": 2, "password_file": "p", **TLS},
        {"security_profile": 3, "tls_client_ca_file": "ca", **TLS},
    ],
)
def test_consistent_security_settings(values: dict[str, Any]) -> None:
    settings(**values)


# -- the TLS context and the password file (small files in a temporary directory) ------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(pki: Pki, profile: int = 0, **values: Any) -> Settings:
    values = {"tls_cert_file": pki.broker.cert, "tls_key_file": pki.broker.key, **values}
    if profile == 3:
        values.setdefault("tls_client_ca_file", pki.ca)
    return settings(security_profile=profile, **values)


def test_tls_context_is_tls_1_2_or_later_without_client_certificates(pki: Pki) -> None:
    context = build_server_ssl_context(tls_settings(pki))
    assert context is not None
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE


def test_profile_3_verifies_client_certificates_against_its_ca_only(pki: Pki) -> None:
    context = build_server_ssl_context(tls_settings(pki, 3))
    assert context is not None
    # Optional for the handshake, so that /health answers; charge points without one get 401.
    assert context.verify_mode is ssl.CERT_OPTIONAL
    trusted = context.get_ca_certs()
    assert [dict(entry[0] for entry in ca["subject"]) for ca in trusted] == [
        {"commonName": "Gateway Test CA"}
    ]  # not the system's CAs too


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"tls_cert_file": "missing.pem"},
            "GATEWAY_TLS_CERT_FILE: {tmp}/missing.pem does not exist",
        ),
        ({"tls_cert_file": "."}, "GATEWAY_TLS_CERT_FILE: {tmp} is a directory, not a file"),
        ({"tls_cert_file": "text"}, "GATEWAY_TLS_CERT_FILE: {tmp}/text holds no PEM cert"),
        ({"tls_key_file": "ca"}, "GATEWAY_TLS_KEY_FILE: {ca} holds no PEM private key"),
        (
            {"tls_key_file": "client-key"},
            "GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE: cannot use {cert} with {client_key}: "
            "the private key does not belong to the certificate",
        ),
        ({"tls_key_file": "encrypted"}, "GATEWAY_TLS_KEY_FILE: {tmp}/encrypted is encrypted"),
        ({"tls_client_ca_file": "text"}, "GATEWAY_TLS_CLIENT_CA_FILE: {tmp}/text holds no"),
    ],
)
def test_unusable_tls_files_name_the_setting_and_the_problem(
    pki: Pki, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    (tmp_path / "text").write_text("not PEM\n")
    key = serialization.load_pem_private_key(pki.broker.key.read_bytes(), None)
    (tmp_path / "encrypted").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    files = {"ca": pki.ca, "client-key": pki.client.key}
    values = {name: files.get(value, tmp_path / value) for name, value in change.items()}
    with pytest.raises(SecurityMisconfigured) as refused:
        build_server_ssl_context(tls_settings(pki, 3, **values))
    expected = message.format(
        tmp=tmp_path, ca=pki.ca, cert=pki.broker.cert, client_key=pki.client.key
    )
    assert str(refused.value).startswith(expected)


async def test_password_file_is_read_at_start_and_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "passwords.txt"
    missing = PasswordFile(path)
    with pytest.raises(SecurityMisconfigured, match=r"GATEWAY_PASSWORD_FILE: .* does not exist"):
        missing.load()
    first = hash_password(b"one", **CHEAP)
    path.write_text(set_password_line("", "CP1", first))
    passwords = PasswordFile(path, poll_interval=60)
    await passwords.start()
    try:
        assert passwords.hash_for("CP1") == first and len(passwords) == 1
        assert not await passwords.reload_if_changed()
        second = hash_password(b"two", **CHEAP)
        path.write_text(set_password_line(path.read_text(), "CP2", second) + "CP3\n")
        assert await passwords.reload_if_changed()
        assert (passwords.hash_for("CP1"), passwords.hash_for("CP2")) == (first, second)
        path.unlink()  # the last good passwords stay
        assert not await passwords.reload_if_changed()
        assert passwords.hash_for("CP2") == second
    finally:
        await passwords.close()


def test_build_authenticator_reads_the_password_file(tmp_path: Path) -> None:
    with pytest.raises(SecurityMisconfigured, match="create it with `ocpp-things password"):
        build_authenticator(settings(security_profile=1, password_file=tmp_path / "none.txt"))
    (tmp_path / "p.txt").write_text(set_password_line("", "CP1", hash_password(b"x", **CHEAP)))
    authenticator = build_authenticator(
        settings(security_profile=1, password_file=tmp_path / "p.txt")
    )
    assert authenticator is not None and authenticator.passwords is not None
    assert authenticator.passwords.hash_for("CP1") is not None


# -- `ocpp-things password` ---------------------------------------------------------------


@pytest.fixture
def password_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no `.env`
    return tmp_path / "passwords.txt"


def ocpp_things(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = things_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_password_command_sets_a_hash_read_from_stdin(
    password_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = ocpp_things(
        monkeypatch, capsys, "password", "CP1", "--password-file", str(password_path),
        stdin="s3cret: with spaces and more \r\n",
    )  # fmt: skip
    assert (code, out) == (0, "")
    assert err == f"ocpp-things: the password of CP1 is set in {password_path}\n"
    text = password_path.read_text()
    assert "s3cret" not in text
    assert password_path.stat().st_mode & 0o777 == 0o600
    stored = parse_password_file(text).hashes["CP1"]
    assert stored.verify(b"s3cret: with spaces and more ")
    assert stored.encode().startswith("$sha256$")


def test_password_command_refuses_a_short_password_unless_forced(
    password_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["password", "CP1", "--password-file", str(password_path)]
    code, _, err = ocpp_things(monkeypatch, capsys, *argv, stdin="fifteen-chars!!\n")
    assert code == 2
    assert "the password has 15 characters; OCPP 2.0.1 passwords have 16 to 40" in err
    assert "--force" in err and not password_path.exists()
    code, _, _ = ocpp_things(monkeypatch, capsys, *argv, "--force", stdin="short\n")
    assert code == 0
    stored = parse_password_file(password_path.read_text()).hashes["CP1"]
    assert stored.verify(b"short") and stored.encode().startswith("$scrypt$ln=14,r=8,p=1$")


def test_password_command_uses_the_gateway_setting_and_removes(
    password_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_PASSWORD_FILE", str(password_path))
    for cp_id in ("CP1", "CP2"):
        password = f"{cp_id} has a long password\n"
        assert ocpp_things(monkeypatch, capsys, "password", cp_id, stdin=password)[0] == 0
    assert set(parse_password_file(password_path.read_text()).hashes) == {"CP1", "CP2"}
    code, _, err = ocpp_things(monkeypatch, capsys, "password", "--remove", "CP1")
    assert (code, err) == (0, f"ocpp-things: the password of CP1 is removed from {password_path}\n")
    assert set(parse_password_file(password_path.read_text()).hashes) == {"CP2"}
    code, _, err = ocpp_things(monkeypatch, capsys, "password", "--remove", "CP1")
    assert code == 0 and "CP1 has no password" in err


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["password", "CP1"], "x\n", "no password file: pass --password-file or set GATEWAY_PAS"),
        (["password", "CP+1", "--password-file", "p"], "x\n", "invalid charge point id 'CP+1'"),
        (["password", "CP1", "--password-file", "p"], "\n", "the password is empty"),
        (["password", "CP1", "--password-file", "p"], "", "the password is empty"),
    ],
)
def test_password_command_usage_errors(
    password_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    monkeypatch.delenv("GATEWAY_PASSWORD_FILE", raising=False)
    code, _, err = ocpp_things(monkeypatch, capsys, *argv, stdin=stdin)
    assert code == 2
    assert message in err and err.endswith("; nothing was changed\n")
    assert not (password_path.parent / "p").exists()


def test_password_command_asks_twice_on_a_terminal(
    password_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["typed", "typo"])
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(things_cli.getpass, "getpass", lambda prompt: next(answers))
    code = things_cli.main(["password", "CP1", "--password-file", str(password_path)])
    assert code == 2 and "the two passwords differ" in capsys.readouterr().err
    assert not password_path.exists()


def test_password_is_not_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert things_cli.main(["password", "CP1", "secret"]) == 2
    assert "unrecognized arguments: secret" in capsys.readouterr().err


# -- failed checks: rate limits and the bounded slow-check queue ------------------------------


async def test_failed_checks_are_limited_per_id_with_a_429_and_retry_after() -> None:
    clock = FakeClock()
    authenticator = CpAuthenticator(
        SecurityProfile.BASIC,
        Passwords(CP1=b"a long random password"),
        by_id=FailureLimiter(2, 60.0, clock=clock),
    )
    for _ in range(2):
        with pytest.raises(AuthRefused) as refused:
            await authenticator.check("CP1", [header("CP1", "wrong")], address="10.0.0.1")
        assert refused.value.status is HTTPStatus.UNAUTHORIZED
    with pytest.raises(AuthRefused) as refused:  # even the right password, until it is time
        await authenticator.check("CP1", [header("CP1", "a long random password")])
    assert refused.value.status is HTTPStatus.TOO_MANY_REQUESTS
    assert refused.value.retry_after == 30
    assert refused.value.reason == (
        "too many failed password checks for charge point CP1; retry in 30 s"
    )
    assert (authenticator.stats.wrong_passwords, authenticator.stats.rate_limited_id) == (2, 1)
    clock.advance(30)
    await authenticator.check("CP1", [header("CP1", "a long random password")])
    await authenticator.close()


async def test_failed_checks_are_limited_per_source_address() -> None:
    clock = FakeClock()
    authenticator = CpAuthenticator(
        SecurityProfile.BASIC,
        Passwords(CP1=b"a long random password"),
        by_address=FailureLimiter(3, 60.0, clock=clock),
    )
    for cp_id in ("X1", "X2", "X3"):  # ids without a password: checked against the decoy
        with pytest.raises(AuthRefused):
            await authenticator.check(cp_id, [header(cp_id, "guess")], address="10.0.0.9")
    with pytest.raises(AuthRefused) as refused:
        await authenticator.check("X4", [header("X4", "guess")], address="10.0.0.9")
    assert refused.value.status is HTTPStatus.TOO_MANY_REQUESTS
    assert refused.value.reason.startswith("too many failed password checks from this address")
    # Another address is not affected.
    await authenticator.check("CP1", [header("CP1", "a long random password")], "", "10.0.0.2")
    assert authenticator.stats.rate_limited_address == 1
    await authenticator.close()


async def test_slow_checks_beyond_the_queue_bound_get_a_503() -> None:
    authenticator = CpAuthenticator(SecurityProfile.BASIC, Passwords(CP1=b"pw"), workers=1)
    authenticator._slow_checks = SLOW_CHECKS_PER_WORKER  # as if that many were waiting
    with pytest.raises(HandshakeRefused) as refused:
        await authenticator.check("CP1", [header("CP1", "pw")])
    assert refused.value.status is HTTPStatus.SERVICE_UNAVAILABLE
    assert authenticator.stats.slow_checks_refused == 1
    await authenticator.close()


def test_build_authenticator_reads_the_rate_limit_settings(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("")
    settings = Settings(
        _env_file=None,
        security_profile=1,
        password_file=path,
        auth_failures_per_id=7,
        auth_failures_per_address=0,
        auth_failure_window=30,
    )
    authenticator = build_authenticator(settings)
    assert authenticator is not None
    assert (authenticator.by_id.allowance, authenticator.by_id.window) == (7, 30)
    assert not authenticator.by_address.enabled


async def test_ids_without_a_password_never_cost_a_slow_check() -> None:
    authenticator = CpAuthenticator(SecurityProfile.BASIC, Passwords(CP1=b"pw"), workers=1)
    authenticator._slow_checks = SLOW_CHECKS_PER_WORKER  # the slow queue is full
    with pytest.raises(AuthRefused) as refused:
        await authenticator.check("CPX", [header("CPX", "short")])
    assert refused.value.status is HTTPStatus.UNAUTHORIZED  # the fast decoy: no 503
    await authenticator.close()
