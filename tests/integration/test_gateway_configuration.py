"""`ocpp-gateway` refuses settings it cannot use: one line naming the variable, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gateway import REPO_ROOT

pytestmark = pytest.mark.integration

SECRET = "Sup3rS3cr3tPW"
ENTRY_POINT = Path(sys.executable).parent / "ocpp-gateway"


def start(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GATEWAY_", "OCPP_", "IOT_"))
    }
    environment.update(GATEWAY_HOST="127.0.0.1", GATEWAY_PORT="0", GATEWAY_LOG_FORMAT="json")
    environment.update(env)
    return subprocess.run(
        command, env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"GATEWAY_MQTT_URL": f"mqtt://u:{SECRET}@:bad"}, "GATEWAY_MQTT_URL"),
        ({"GATEWAY_MQTT_URL": f"mqtt://u:{SECRET}@broker:99999"}, "GATEWAY_MQTT_URL"),
        ({"GATEWAY_MQTT_URL": f"ws://u:{SECRET}@broker"}, "GATEWAY_MQTT_URL"),
        ({"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT"),
        ({"GATEWAY_QOS": "2", "GATEWAY_MQTT_URL": f"mqtt://u:{SECRET}@broker"}, "GATEWAY_QOS"),
        ({"GATEWAY_MQTT_KEY_PEM": SECRET}, "GATEWAY_MQTT_CERT_FILE"),
        (
            {
                "GATEWAY_MQTT_URL": f"mqtts://u:{SECRET}@broker:8883",
                "GATEWAY_MQTT_CA_FILE": "/nonexistent/ca.pem",
            },
            "GATEWAY_MQTT_CA_FILE",
        ),
        (
            {"GATEWAY_SECURITY_PROFILE": "1", "GATEWAY_PASSWORD_FILE": "/nonexistent/passwords"},
            "GATEWAY_PASSWORD_FILE",
        ),
        (
            {"GATEWAY_TOPIC_IN": "{cpid}/in", "GATEWAY_MQTT_URL": f"mqtt://u:{SECRET}@broker"},
            "GATEWAY_TOPIC_IN",
        ),
    ],
    ids=[
        "url-without-host",
        "url-bad-port",
        "url-bad-scheme",
        "port-not-a-number",
        "qos-out-of-range",
        "key-without-certificate",
        "ca-file-missing",
        "password-file-missing",
        "topic-template-misspelt",
    ],
)
@pytest.mark.parametrize("command", ["entry-point", "module"])
def test_configuration_errors_are_one_line_without_the_secret(
    env: dict[str, str], variable: str, command: str
) -> None:
    argv = [str(ENTRY_POINT)] if command == "entry-point" else [sys.executable, "-m", "gateway"]
    finished = start(argv, **env)
    assert finished.returncode == 2, finished.stderr
    assert SECRET not in finished.stderr + finished.stdout
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith("ocpp-gateway: invalid configuration: ")
    assert variable in lines[0]
    assert "Traceback" not in finished.stderr
