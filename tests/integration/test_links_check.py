"""`python -m gateway.links.check`: one connection as the gateway would make it, with a verdict."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.gateway import REPO_ROOT
from tests.support.mosquitto import start_broker
from tests.support.mqtt import MqttPeer, mqtt_peer
from tests.support.tls import STATIC_AWS_CREDENTIALS, Pki, TlsBroker, link_setup, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[TlsBroker]:
    pki = make_pki()
    broker = TlsBroker(pki).start()
    yield broker
    broker.stop()
    shutil.rmtree(pki.directory, ignore_errors=True)


def run_check(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.links.check", *arguments],
        env={**clean, "GATEWAY_MQTT_TIMEOUT": "2", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def env_for(name: str, broker: TlsBroker, **extra: str) -> dict[str, str]:
    link = link_setup(name, broker)
    return {"GATEWAY_MQTT_URL": link.url, **STATIC_AWS_CREDENTIALS, **link.env, **extra}


@contextlib.asynccontextmanager
async def answering_csms(broker: TlsBroker) -> AsyncIterator[MqttPeer]:
    """Answers every CALL on `<cp>/in` with an empty CALLRESULT on `<cp>/out`."""
    async with mqtt_peer(broker.plain_url, "+/in") as peer:

        async def answer() -> None:
            while True:
                received = await peer.received.get()
                cp_id = received.topic.split("/")[0]
                message_id = received.payload.split(b'"')[1].decode()
                await peer.publish(f"{cp_id}/out", f'[3,"{message_id}",{{}}]')

        answering = asyncio.create_task(answer())
        try:
            yield peer
        finally:
            answering.cancel()


@pytest.mark.parametrize("name", ["aiomqtt-plain", "aiomqtt-mtls", "awscrt-mtls", "awscrt-sigv4"])
def test_a_working_link_says_ok(name: str, tls_broker: TlsBroker) -> None:
    result = run_check(env_for(name, tls_broker))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "OK  connected as GatewayCheck, subscribed to GatewayCheck/out" in lines
    assert any(line.startswith("OK  published a Heartbeat to GatewayCheck/in") for line in lines)
    assert lines[-1] == "OK"


async def test_the_answer_is_waited_for_on_request(tls_broker: TlsBroker) -> None:
    async with answering_csms(tls_broker):
        result = await asyncio.to_thread(
            run_check,
            env_for("awscrt-mtls", tls_broker),
            "--cp-id",
            "CP-7",
            "--answer-timeout",
            "10",
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(
        line.startswith('OK  answer on CP-7/out: [3,"check-') for line in result.stdout.splitlines()
    )


def test_no_answer_fails_with_a_hint(tls_broker: TlsBroker) -> None:
    result = run_check(env_for("aiomqtt-plain", tls_broker), "--answer-timeout", "0.5")
    assert result.returncode == 1
    assert "(is the processor running?)" in result.stdout


@pytest.mark.parametrize("name", ["aiomqtt-mtls", "awscrt-mtls"])
def test_a_wrong_ca_fails_and_says_why(name: str, tls_broker: TlsBroker) -> None:
    pki: Pki = tls_broker.pki
    result = run_check(env_for(name, tls_broker, GATEWAY_MQTT_CA_FILE=str(pki.wrong_ca)))
    assert result.returncode == 1
    assert "broker.tls_failed" in result.stderr and "certificate verify failed" in result.stderr
    assert result.stdout.splitlines()[-1] == "FAILED"


def test_bad_configuration_exits_2(tls_broker: TlsBroker) -> None:
    missing = run_check(env_for("awscrt-mtls", tls_broker, GATEWAY_MQTT_CERT_FILE="/no/cert.pem"))
    assert missing.returncode == 2
    assert "cannot read GATEWAY_MQTT_CERT_FILE=/no/cert.pem" in missing.stderr
    contradictory = run_check({"GATEWAY_MQTT_URL": "mqtt://h", "GATEWAY_MQTT_CA_FILE": "/ca.pem"})
    assert contradictory.returncode == 2
    assert "use mqtts://host:port" in contradictory.stderr
    bad_id = run_check({}, "--cp-id", "a/b")
    assert bad_id.returncode == 2
    assert "invalid --cp-id" in bad_id.stderr


@pytest.mark.parametrize(
    ("impl", "refusal"), [("aiomqtt", "[code:135] Not authorized"), ("awscrt", "NOT_AUTHORIZED")]
)
def test_a_refused_client_fails_and_says_why(impl: str, refusal: str) -> None:
    """As when an IoT policy does not allow the client id."""
    broker = start_broker(extra_config=["allow_anonymous false"])
    try:
        result = run_check({"GATEWAY_MQTT_URL": broker.url, "GATEWAY_LINK_IMPL": impl})
    finally:
        broker.stop()
    assert result.returncode == 1
    assert refusal in result.stderr
