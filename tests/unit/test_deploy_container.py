"""The container image's recipe: lint, the facts operators rely on, and its pinned dependencies."""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import ssl
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.deploy_files import (
    Instruction,
    final_stage,
    image_runtime,
    parse_dockerfile,
    runtime_environment,
)
from scripts.deploy_tools import REPO_ROOT, find_tool
from tests.support.tls import make_pki

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LOCK_FILE = REPO_ROOT / "requirements.lock"
IMAGE_EXTRAS = ("aws", "fast")


def load_healthcheck() -> ModuleType:
    path = REPO_ROOT / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("container_healthcheck", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runtime() -> list[Instruction]:
    return image_runtime()


def test_dockerfile_without_from_is_refused() -> None:
    with pytest.raises(ValueError, match="no FROM"):
        final_stage(parse_dockerfile("RUN true\n"))


def test_env_in_the_legacy_space_form_is_refused() -> None:
    with pytest.raises(ValueError, match="name=value"):
        runtime_environment(parse_dockerfile("FROM a\nENV NAME value\n"))


def test_parse_dockerfile_joins_continuations_and_drops_comments() -> None:
    text = '# c\nFROM a AS b\nRUN x \\\n    && y\n\nCMD ["z"]\n'
    assert parse_dockerfile(text) == [
        Instruction("FROM", "a AS b"),
        Instruction("RUN", "x && y"),
        Instruction("CMD", '["z"]'),
    ]


def test_hadolint_finds_nothing() -> None:
    hadolint = find_tool("hadolint")
    result = subprocess.run(
        [str(hadolint), "--config", str(REPO_ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_from_one_slim_python_pinned_by_digest() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    stages = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2, stages
    assert len(set(stages)) == 1, stages
    tag, _, digest = stages[0].partition("@")
    assert tag == "python:3.11-slim-bookworm"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), stages[0]


def test_runtime_runs_as_non_root(runtime: list[Instruction]) -> None:
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users


def test_runtime_exposes_8080_with_health_check_and_drains_on_sigterm(
    runtime: list[Instruction],
) -> None:
    by_keyword = {i.keyword: i.arguments for i in runtime}
    assert by_keyword["EXPOSE"] == "8080"
    assert by_keyword["STOPSIGNAL"] == "SIGTERM"
    assert "/usr/local/lib/ocpp/healthcheck.py" in by_keyword["HEALTHCHECK"]
    assert json.loads(by_keyword["CMD"]) == ["ocpp-gateway"]
    env = runtime_environment(runtime)
    assert env["GATEWAY_PORT"] == "8080"
    # `docker stop` waits 10 s before SIGKILL: the drain must finish inside that.
    assert float(env["GATEWAY_SHUTDOWN_TIMEOUT"]) < 10


def test_everything_the_dockerfile_copies_exists_and_is_not_ignored() -> None:
    ignore_lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore_lines[0] == "*", ".dockerignore is an allow-list: it must start with `*`"
    allowed = {line[1:].rstrip("/") for line in ignore_lines if line.startswith("!")}
    for instruction in parse_dockerfile(DOCKERFILE.read_text()):
        if instruction.keyword != "COPY" or "--from=" in instruction.arguments:
            continue
        sources = [word for word in instruction.arguments.split() if not word.startswith("--")]
        for source in sources[:-1]:
            source = source.rstrip("/")
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source in allowed, f"COPY {source}: excluded by .dockerignore"


def locked_versions(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        if not separator:
            raise ValueError(f"requirements.lock: {line!r} is not pinned with ==")
        pins[str(canonicalize_name(name))] = version
    return pins


def unmet_requirements(requirements: list[str], pins: dict[str, str]) -> list[str]:
    """The project requirements (markers evaluated for Linux) the pins do not satisfy."""
    unmet = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{text} (locked: {version})")
    return unmet


def test_locked_versions_reject_unpinned_lines() -> None:
    with pytest.raises(ValueError, match="not pinned"):
        locked_versions("websockets>=15\n")


def test_unmet_requirements_names_missing_and_out_of_range_pins() -> None:
    pins = {"websockets": "14.0"}
    assert unmet_requirements(["websockets>=15", "ocpp>=2"], pins) == [
        "websockets>=15 (locked: 14.0)",
        "ocpp>=2 (locked: None)",
    ]
    assert unmet_requirements(["uvloop>=0.19; sys_platform == 'win32'"], {}) == []


def test_lock_file_satisfies_the_project_and_its_image_extras() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        requirements.extend(project["optional-dependencies"][extra])
    unmet = unmet_requirements(requirements, locked_versions(LOCK_FILE.read_text()))
    assert not unmet, f"requirements.lock is stale, run scripts/lock_requirements.sh: {unmet}"


def test_health_url_follows_the_gateway_port_variables() -> None:
    healthcheck = load_healthcheck()
    assert healthcheck.health_url({}) == "http://127.0.0.1:8080/health"
    assert healthcheck.health_url({"OCPP_GATEWAY_PORT": "9000"}) == "http://127.0.0.1:9000/health"
    both = {"GATEWAY_PORT": "9001", "OCPP_GATEWAY_PORT": "9000"}
    assert healthcheck.health_url(both) == "http://127.0.0.1:9001/health"


@pytest.mark.parametrize(
    ("environ", "scheme"),
    [
        ({"GATEWAY_TLS_CERT_FILE": "/run/secrets/gateway.pem"}, "https"),
        ({"GATEWAY_SECURITY_PROFILE": "2"}, "https"),
        ({"GATEWAY_SECURITY_PROFILE": "3"}, "https"),
        ({"GATEWAY_SECURITY_PROFILE": "0"}, "http"),
        ({"GATEWAY_SECURITY_PROFILE": "1"}, "http"),
        ({"GATEWAY_TLS_CERT_FILE": ""}, "http"),
        ({"GATEWAY_TLS_KEY_FILE": "/run/secrets/gateway.key"}, "http"),  # no certificate, no TLS
    ],
)
def test_health_url_is_https_when_the_gateway_serves_tls(
    environ: dict[str, str], scheme: str
) -> None:
    healthcheck = load_healthcheck()
    environ = {"GATEWAY_PORT": "8443", **environ}
    assert healthcheck.health_url(environ) == f"{scheme}://127.0.0.1:8443/health"


def test_health_url_refuses_a_port_that_is_not_a_number() -> None:
    healthcheck = load_healthcheck()
    with pytest.raises(ValueError, match="GATEWAY_PORT must be a port number"):
        healthcheck.health_url({"GATEWAY_PORT": "80; rm -rf /"})


def test_healthcheck_exits_1_with_a_reason_when_the_port_is_bad() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "docker" / "healthcheck.py")],
        env={"GATEWAY_PORT": "eighty"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "GATEWAY_PORT must be a port number" in result.stderr


class _NotReady(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "not ready", "broker": "unreachable"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_healthcheck_reports_a_gateway_that_is_not_ready() -> None:
    healthcheck = load_healthcheck()
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        healthy, detail = healthcheck.check(f"http://127.0.0.1:{server.server_port}/health")
    finally:
        server.shutdown()
        server.server_close()
    assert healthy is False
    assert detail == '503 {"status": "not ready", "broker": "unreachable"}'


class _Ready(_NotReady):
    def do_GET(self) -> None:
        body = b'{"status": "ready"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_healthcheck_over_tls_does_not_verify_the_gateways_own_certificate(
    tmp_path: Path,
) -> None:
    """The gateway's certificate comes from a CA this machine does not trust, and names the
    public host; the container checking itself over loopback accepts it anyway."""
    healthcheck = load_healthcheck()
    pki = make_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.stranger.cert, pki.stranger.key)  # CN "stranger", no SAN
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = healthcheck.health_url(
            {"GATEWAY_PORT": str(server.server_port), "GATEWAY_SECURITY_PROFILE": "3"}
        )
        healthy, detail = healthcheck.check(url)
        plain = healthcheck.check(f"http://127.0.0.1:{server.server_port}/health")
    finally:
        server.shutdown()
        server.server_close()
    assert (healthy, detail) == (True, '200 {"status": "ready"}')
    assert plain[0] is False  # plain http to a TLS port is unhealthy, as before
