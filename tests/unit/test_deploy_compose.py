"""The compose stack, as `docker compose config` resolves it (no Docker engine needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts.deploy_files import compose_config
from scripts.deploy_tools import REPO_ROOT, find_tool

ROOT_COMPOSE = REPO_ROOT / "compose.yaml"
STACK_COMPOSE = REPO_ROOT / "docker" / "compose.yaml"
HAPROXY_CFG = REPO_ROOT / "docker" / "haproxy.cfg"
BASE_SERVICES = {"mosquitto", "processor", "gateway"}
REPLICAS = {"gateway-replica-1", "gateway-replica-2"}


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """{container port: host port}."""
    return {int(p["target"]): int(p["published"]) for p in service.get("ports", [])}


@pytest.fixture(scope="module")
def default_stack() -> dict[str, Any]:
    return compose_config(ROOT_COMPOSE)["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def replicas_stack() -> dict[str, Any]:
    return compose_config(ROOT_COMPOSE, "replicas")["services"]  # type: ignore[no-any-return]


def test_compose_up_from_the_root_starts_broker_processor_and_gateway(
    default_stack: dict[str, Any],
) -> None:
    assert set(default_stack) == BASE_SERVICES


def test_stack_file_validates_on_its_own_with_both_profiles() -> None:
    assert set(compose_config(STACK_COMPOSE)["services"]) == BASE_SERVICES
    with_replicas = compose_config(STACK_COMPOSE, "replicas")["services"]
    assert set(with_replicas) == BASE_SERVICES | REPLICAS | {"loadbalancer"}


def test_gateway_and_broker_are_published_on_8080_and_1883(default_stack: dict[str, Any]) -> None:
    assert published_ports(default_stack["gateway"]) == {8080: 8080}
    assert published_ports(default_stack["mosquitto"]) == {1883: 1883}
    assert published_ports(default_stack["processor"]) == {8000: 8000}  # status page


def test_every_port_is_published_on_loopback_only_by_default(
    replicas_stack: dict[str, Any],
) -> None:
    """The broker takes anonymous clients: never on every interface unless asked."""
    bindings = {
        name: {port.get("host_ip") for port in service.get("ports", [])}
        for name, service in replicas_stack.items()
        if service.get("ports")
    }
    assert bindings == {
        "mosquitto": {"127.0.0.1"},
        "gateway": {"127.0.0.1"},
        "loadbalancer": {"127.0.0.1"},
        "processor": {"127.0.0.1"},  # the status page
    }


def test_the_gateway_can_be_published_on_the_network_when_asked() -> None:
    services = compose_config(ROOT_COMPOSE, variables={"GATEWAY_BIND": "0.0.0.0"})["services"]
    assert {port.get("host_ip") for port in services["gateway"]["ports"]} == {"0.0.0.0"}
    assert {port.get("host_ip") for port in services["mosquitto"]["ports"]} == {"127.0.0.1"}


def test_gateway_and_processor_share_one_image_built_from_the_root(
    default_stack: dict[str, Any],
) -> None:
    gateway, processor = default_stack["gateway"], default_stack["processor"]
    assert gateway["image"] == processor["image"]
    assert Path(gateway["build"]["context"]) == REPO_ROOT
    assert gateway["build"]["dockerfile"] == "Dockerfile"
    assert gateway["command"] == ["ocpp-gateway"]
    assert processor["command"] == ["ocpp-processor"]


def test_services_reach_the_broker_by_its_service_name(default_stack: dict[str, Any]) -> None:
    assert default_stack["gateway"]["environment"]["GATEWAY_MQTT_URL"] == "mqtt://mosquitto:1883"
    assert default_stack["processor"]["environment"]["PROCESSOR_MQTT_URL"] == (
        "mqtt://mosquitto:1883"
    )
    for name in ("gateway", "processor"):
        depends = default_stack[name]["depends_on"]
        assert depends["mosquitto"]["condition"] == "service_healthy"


def test_health_checks_and_graceful_stop(default_stack: dict[str, Any]) -> None:
    gateway = default_stack["gateway"]
    assert gateway["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/usr/local/lib/ocpp/healthcheck.py",
    ]
    assert default_stack["processor"]["healthcheck"]["disable"] is True
    assert "mosquitto_sub" in default_stack["mosquitto"]["healthcheck"]["test"]
    assert gateway["stop_signal"] == "SIGTERM"
    grace = parse_duration(gateway["stop_grace_period"])
    assert grace > float(gateway["environment"]["GATEWAY_SHUTDOWN_TIMEOUT"])
    assert gateway["ulimits"]["nofile"] == {"soft": 65536, "hard": 65536}


def test_registry_file_is_mounted_from_the_repository(default_stack: dict[str, Any]) -> None:
    gateway = default_stack["gateway"]
    mounts = {m["target"]: m for m in gateway["volumes"]}
    mount = mounts["/app/config"]
    assert Path(mount["source"]) == REPO_ROOT / "config"
    assert mount["read_only"] is True
    assert gateway["environment"]["GATEWAY_REGISTRY_FILE"] == "/app/config/things.txt"
    assert "CP1" in (REPO_ROOT / "config" / "things.txt").read_text()


def test_replicas_profile_puts_two_gateways_behind_the_load_balancer(
    replicas_stack: dict[str, Any],
) -> None:
    assert set(replicas_stack) == BASE_SERVICES | REPLICAS | {"loadbalancer"}
    ids = {replicas_stack[name]["environment"]["GATEWAY_GATEWAY_ID"] for name in REPLICAS}
    assert ids == REPLICAS
    for name in REPLICAS:
        replica = replicas_stack[name]
        assert replica["command"] == ["ocpp-gateway"]
        assert replica["environment"]["GATEWAY_MQTT_URL"] == "mqtt://mosquitto:1883"
        assert published_ports(replica) == {}, "replicas are reached through the load balancer"
    balancer = replicas_stack["loadbalancer"]
    assert published_ports(balancer) == {8081: 8081}
    for name in REPLICAS:
        assert balancer["depends_on"][name]["condition"] == "service_healthy"


def test_haproxy_balances_tcp_over_both_replicas_with_health_checks(
    replicas_stack: dict[str, Any],
) -> None:
    config = HAPROXY_CFG.read_text()
    assert re.search(r"^\s*mode tcp$", config, re.MULTILINE)
    assert re.search(r"^\s*option httpchk GET /health$", config, re.MULTILINE)
    servers = set(re.findall(r"^\s*server \S+ (\S+):8080", config, re.MULTILINE))
    assert servers == REPLICAS
    (bind_port,) = re.findall(r"^\s*bind :(\d+)$", config, re.MULTILINE)
    assert int(bind_port) in published_ports(replicas_stack["loadbalancer"])


def test_haproxy_accepts_the_configuration() -> None:
    result = subprocess.run(
        [str(find_tool("haproxy")), "-c", "-f", str(HAPROXY_CFG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def parse_duration(text: str) -> float:
    """Compose durations such as `15s`, `1m30s`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a compose duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def test_parse_duration() -> None:
    assert parse_duration("15s") == 15
    assert parse_duration("1m30s") == 90
    with pytest.raises(ValueError, match="not a compose duration"):
        parse_duration("15 seconds")


def test_a_broken_compose_file_is_reported_with_compose_s_message(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  gateway:\n    image: x\n    ports: 8080\n")
    with pytest.raises(ValueError, match="config failed") as error:
        compose_config(broken)
    assert "ports" in str(error.value)
