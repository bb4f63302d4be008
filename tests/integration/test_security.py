"""OCPP security profiles at a real gateway, with real clients: Basic auth over ws:// (1) and
wss:// (2), client certificates (3), and TLS files that stop the gateway at start.

Security does not depend on the broker link, so these tests run with the default link only.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from gateway.registry import things_cli
from gateway.security import hash_password, set_password_line
from gateway.server import Gateway
from tests.support.gateway import REPO_ROOT, running_gateway
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import MqttPeer
from tests.support.processor import running_processor
from tests.support.simulator_process import SimulatorProcess
from tests.support.tls import Issued, Pki, issue_client_cert, make_pki
from tests.support.waiting import until

pytestmark = pytest.mark.integration

PASSWORDS = {"CP1": "correct horse battery staple", "CP2": "another long password"}
HEARTBEAT = '[2,"1","Heartbeat",{}]'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    # The "broker" certificate names 127.0.0.1 and localhost: the gateway serves it here.
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cp_certs(pki: Pki) -> dict[str, Issued]:
    return {cp_id: issue_client_cert(pki, cp_id) for cp_id in ("CP1", "CP2")}


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    """CP1's and CP2's passwords, hashed cheaply so that the tests stay fast."""
    text = ""
    for cp_id, password in PASSWORDS.items():
        text = set_password_line(text, cp_id, hash_password(password.encode(), log2_n=10))
    path = tmp_path / "passwords.txt"
    path.write_text(text)
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def url(gateway: Gateway, cp_id: str = "CP1") -> str:
    scheme = "wss" if gateway.ssl_context is not None else "ws"
    return f"{scheme}://127.0.0.1:{gateway.port}/{cp_id}"


def client_context(pki: Pki, cert: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


async def assert_bridged(ws: ClientConnection, csms: MqttPeer, cp_id: str = "CP1") -> None:
    assert ws.subprotocol == "ocpp2.0.1"
    await ws.send(HEARTBEAT)
    received = await csms.next()
    assert (received.topic, received.payload) == (f"{cp_id}/in", HEARTBEAT.encode())


async def refusal(address: str, **options: Any) -> tuple[int, str, str | None]:
    """(status, body, WWW-Authenticate) of a handshake the gateway answers with an error."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(address, subprotocols=["ocpp2.0.1"], **options):
            pass
    response = refused.value.response
    return response.status_code, response.body.decode(), response.headers.get("WWW-Authenticate")


def handshakes(gateway: Gateway, outcome: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "ocpp_gateway_handshakes_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_profile_1_admits_the_right_password_and_refuses_the_rest_with_401(
    broker: MosquittoProcess, csms: MqttPeer, password_file: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with running_gateway(
            broker.url, security_profile=1, password_file=password_file
        ) as gw:
            async with connect(
                url(gw),
                subprotocols=["ocpp2.0.1"],
                additional_headers=basic("CP1", PASSWORDS["CP1"]),
            ) as ws:
                await assert_bridged(ws, csms)
            refused = {
                "no credentials": await refusal(url(gw)),
                "wrong password": await refusal(url(gw), additional_headers=basic("CP1", "guess")),
                # CP2's own, correct password does not open CP1's connection.
                "user is not the cpId": await refusal(
                    url(gw), additional_headers=basic("CP2", PASSWORDS["CP2"])
                ),
                # Not registered and no password: refused like a wrong password, never probed.
                "unknown id": await refusal(url(gw, "CPX"), additional_headers=basic("CPX", "x")),
            }
            assert handshakes(gw, "401") == 4
            assert handshakes(gw, "accepted") == 1

    assert {case: status for case, (status, _, _) in refused.items()} == dict.fromkeys(refused, 401)
    for _, body, challenge in refused.values():
        assert challenge == 'Basic realm="OCPP", charset="UTF-8"'
        assert len(body.strip().splitlines()) == 1
    assert refused["no credentials"][1] == (
        "HTTP Basic credentials are required (user = charge point id)\n"
    )
    assert refused["wrong password"][1] == "wrong password for charge point CP1\n"
    assert refused["user is not the cpId"][1] == (
        "the HTTP Basic user must be the charge point id CP1\n"
    )
    assert refused["unknown id"][1] == "wrong password for charge point CPX\n"
    assert csms.received.empty()

    refusals = [entry for entry in logs if entry["event"] == "cp.refused"]
    assert [(entry["status"], entry["auth"]) for entry in refusals] == [
        (401, "no Authorization header"),
        (401, "wrong password"),
        (401, "the user is not the charge point id"),
        (401, "no password stored for this charge point"),
    ]
    logged = repr(logs)
    assert all(password not in logged for password in [*PASSWORDS.values(), "guess"])
    sent = [basic(user, password) for user, password in [*PASSWORDS.items(), ("CP1", "guess")]]
    assert all(header["Authorization"].split()[1] not in logged for header in sent)


async def test_password_changes_apply_without_a_restart(
    broker: MosquittoProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "passwords.txt"

    def ocpp_things_password(*arguments: str, stdin: str = "") -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        assert things_cli.main(["password", *arguments, "--password-file", str(path)]) == 0

    async def status(password: str) -> int:
        try:
            async with connect(
                f"ws://127.0.0.1:{gw.port}/CP1",
                subprotocols=["ocpp2.0.1"],
                additional_headers=basic("CP1", password),
            ):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    ocpp_things_password("CP1", stdin="the first password\n")
    assert "the first password" not in path.read_text()
    async with running_gateway(
        broker.url, security_profile=1, password_file=path, password_file_poll_interval=0.05
    ) as gw:
        assert gw.authenticator is not None and gw.authenticator.passwords is not None
        passwords = gw.authenticator.passwords

        async def changed_to(*arguments: str, stdin: str = "") -> None:
            before = passwords.hash_for("CP1")
            ocpp_things_password(*arguments, stdin=stdin)
            await until(lambda: passwords.hash_for("CP1") != before, what="the file reloaded")

        assert await status("the first password") == 101
        await changed_to("CP1", stdin="the second password\n")
        assert await status("the first password") == 401
        assert await status("the second password") == 101
        await changed_to("--remove", "CP1")
        assert await status("the second password") == 401


async def test_profile_2_serves_wss_with_basic_auth_and_http_over_tls(
    broker: MosquittoProcess, csms: MqttPeer, pki: Pki, password_file: Path
) -> None:
    async with running_gateway(
        broker.url,
        security_profile=2,
        password_file=password_file,
        tls_cert_file=pki.broker.cert,
        tls_key_file=pki.broker.key,
    ) as gw:
        context = client_context(pki)
        async with connect(
            url(gw),
            subprotocols=["ocpp2.0.1"],
            ssl=context,
            additional_headers=basic("CP1", PASSWORDS["CP1"]),
        ) as ws:
            await assert_bridged(ws, csms)
        status, _, challenge = await refusal(url(gw), ssl=context)
        assert (status, challenge is not None) == (401, True)

        def get(path: str) -> tuple[int, bytes]:
            address = f"https://127.0.0.1:{gw.port}{path}"
            with urllib.request.urlopen(address, timeout=5, context=context) as response:
                return response.status, response.read()

        status, body = await asyncio.to_thread(get, "/health")
        assert (status, json.loads(body)["status"]) == (200, "ready")
        status, body = await asyncio.to_thread(get, "/metrics")
        assert status == 200
        assert b'ocpp_gateway_handshakes_total{outcome="401"} 1.0' in body


@pytest.fixture
async def simulator() -> AsyncIterator[list[SimulatorProcess]]:
    started: list[SimulatorProcess] = []
    yield started
    for process in started:
        await process.kill()


async def test_profile_2_with_the_projects_simulator(
    broker: MosquittoProcess,
    pki: Pki,
    password_file: Path,
    simulator: list[SimulatorProcess],
) -> None:
    async with (
        running_processor(broker.url),
        running_gateway(
            broker.url,
            security_profile=2,
            password_file=password_file,
            tls_cert_file=pki.broker.cert,
            tls_key_file=pki.broker.key,
        ) as gw,
    ):
        cp = await SimulatorProcess.start(
            "--url", f"wss://127.0.0.1:{gw.port}", "--cp-id", "CP1",
            "--password", PASSWORDS["CP1"], "--ca-file", str(pki.ca), "--heartbeats", "1",
        )  # fmt: skip
        simulator.append(cp)
        assert await cp.wait() == 0, cp.output
        wrong = await SimulatorProcess.start(
            "--url", f"wss://127.0.0.1:{gw.port}", "--cp-id", "CP1",
            "--password", "guess", "--ca-file", str(pki.ca),
        )  # fmt: skip
        simulator.append(wrong)
        assert await wrong.wait() == 1
    assert "INFO:root:CP1: connected to central system" in cp.lines
    assert wrong.lines == [
        "ERROR:root:CP1: server rejected WebSocket connection: HTTP 401 (Unauthorized): "
        "wrong password for charge point CP1; check --password (the user name is the charge "
        "point id)"
    ]


@pytest.fixture
async def profile_3_gateway(broker: MosquittoProcess, pki: Pki) -> AsyncIterator[Gateway]:
    async with running_gateway(
        broker.url,
        security_profile=3,
        tls_cert_file=pki.broker.cert,
        tls_key_file=pki.broker.key,
        tls_client_ca_file=pki.ca,
    ) as gw:
        yield gw


async def test_profile_3_client_certificate_cn_must_be_the_cp_id(
    profile_3_gateway: Gateway, csms: MqttPeer, pki: Pki, cp_certs: dict[str, Issued]
) -> None:
    gw = profile_3_gateway
    async with connect(
        url(gw), subprotocols=["ocpp2.0.1"], ssl=client_context(pki, cp_certs["CP1"])
    ) as ws:
        await assert_bridged(ws, csms)
    status, body, challenge = await refusal(url(gw), ssl=client_context(pki, cp_certs["CP2"]))
    assert (status, challenge) == (403, None)
    assert body == (
        "the client certificate has the subject CN 'CP2'; it must be the charge point id CP1\n"
    )
    assert handshakes(gw, "403") == 1
    assert csms.received.empty()


async def test_profile_3_without_a_client_certificate_gets_401_and_health_still_answers(
    profile_3_gateway: Gateway, csms: MqttPeer, pki: Pki
) -> None:
    gw = profile_3_gateway
    context = client_context(pki)  # trusts the gateway, presents no certificate
    with structlog.testing.capture_logs() as logs:
        status, body, challenge = await refusal(url(gw), ssl=context)
    assert (status, challenge) == (401, None)
    assert body == (
        "security profile 3: this gateway needs a client certificate whose CN is the charge "
        "point id CP1\n"
    )
    assert handshakes(gw, "401") == 1
    (refused,) = [entry for entry in logs if entry["event"] == "cp.refused"]
    assert (refused["status"], refused["auth"]) == (401, "no client certificate")
    assert csms.received.empty()

    # Load balancers and container health checks present no certificate either.
    def get(path: str) -> tuple[int, bytes]:
        address = f"https://127.0.0.1:{gw.port}{path}"
        with urllib.request.urlopen(address, timeout=5, context=context) as response:
            return response.status, response.read()

    status, body = await asyncio.to_thread(get, "/health")
    assert (status, json.loads(body)["status"]) == (200, "ready")
    status, body = await asyncio.to_thread(get, "/health/live")
    assert (status, json.loads(body)["status"]) == (200, "alive")
    status, body = await asyncio.to_thread(get, "/metrics")
    assert status == 200
    assert b'ocpp_gateway_handshakes_total{outcome="401"} 1.0' in body


async def test_profile_3_with_a_certificate_from_another_ca_fails_the_tls_handshake(
    profile_3_gateway: Gateway, csms: MqttPeer, pki: Pki, cp_certs: dict[str, Issued]
) -> None:
    gw = profile_3_gateway
    context = client_context(pki, pki.stranger)
    # TLS 1.3 clients learn of the refusal at their first read: an alert, or the socket closed.
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
        async with connect(url(gw), subprotocols=["ocpp2.0.1"], ssl=context, open_timeout=5):
            pass
    # Not even /health: a certificate that is presented must verify.
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        await asyncio.to_thread(
            urllib.request.urlopen,
            f"https://127.0.0.1:{gw.port}/health",
            timeout=5,
            context=context,
        )
    assert handshakes(gw, "401") == handshakes(gw, "403") == 0
    async with connect(
        url(gw), subprotocols=["ocpp2.0.1"], ssl=client_context(pki, cp_certs["CP1"])
    ) as ws:
        await assert_bridged(ws, csms)


async def run_container_healthcheck(env: dict[str, str]) -> tuple[int, str]:
    """docker/healthcheck.py as the image's HEALTHCHECK runs it: only the container's variables."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO_ROOT / "docker" / "healthcheck.py"),
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, output.decode()


@pytest.mark.parametrize("profile", [0, 2, 3])
async def test_container_healthcheck_uses_https_when_the_gateway_serves_tls(
    broker: MosquittoProcess, pki: Pki, password_file: Path, profile: int
) -> None:
    settings: dict[str, Any] = {
        "security_profile": profile,
        "tls_cert_file": pki.broker.cert,
        "tls_key_file": pki.broker.key,
    }
    if profile == 2:
        settings["password_file"] = password_file
    if profile == 3:
        settings["tls_client_ca_file"] = pki.ca
    async with running_gateway(broker.url, **settings) as gw:
        env = {
            f"GATEWAY_{name.upper()}": str(value)
            for name, value in settings.items()
            if name != "password_file"  # not needed to decide on https
        }
        code, output = await run_container_healthcheck({"GATEWAY_PORT": str(gw.port), **env})
        assert (code, output.split(" -> ")[0]) == (
            0,
            f"healthcheck: https://127.0.0.1:{gw.port}/health",
        ), output
        assert '-> 200 {"status": "ready"' in output
        # Without the TLS variables it would ask in plain http, which a TLS port cannot answer.
        code, output = await run_container_healthcheck({"GATEWAY_PORT": str(gw.port)})
        assert code == 1 and f"http://127.0.0.1:{gw.port}/health -> unreachable" in output


@pytest.fixture
def gateway_env(pki: Pki, password_file: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key not in {"OCPP_GATEWAY_PORT", "IOT_ENDPOINT"}
    }
    env.update(
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT="0",
        GATEWAY_REGISTRY="allow-all",
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_SECURITY_PROFILE="2",
        GATEWAY_PASSWORD_FILE=str(password_file),
        GATEWAY_TLS_CERT_FILE=str(pki.broker.cert),
        GATEWAY_TLS_KEY_FILE=str(pki.broker.key),
    )
    return env


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"GATEWAY_TLS_CERT_FILE": "/nonexistent/gateway.pem"},
            "GATEWAY_TLS_CERT_FILE: /nonexistent/gateway.pem does not exist",
        ),
        (
            {"GATEWAY_TLS_KEY_FILE": "client.key"},
            "GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE: cannot use {broker} with {client}: "
            "the private key does not belong to the certificate",
        ),
        (
            {"GATEWAY_PASSWORD_FILE": ""},
            "GATEWAY_SECURITY_PROFILE=2 checks passwords: set GATEWAY_PASSWORD_FILE",
        ),
    ],
    ids=["missing certificate", "key of another certificate", "no password file"],
)
def test_unusable_security_settings_stop_the_gateway_at_start(
    gateway_env: dict[str, str], pki: Pki, change: dict[str, str], expected: str
) -> None:
    for key, value in change.items():
        if value == "client.key":
            value = str(pki.client.key)
        if value:
            gateway_env[key] = value
        else:
            del gateway_env[key]
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env=gateway_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert expected.format(broker=pki.broker.cert, client=pki.client.key) in result.stderr
