"""What the deployment files say, read the way Docker and Compose read them.

Used by the deployment tests: the Dockerfile's instructions and runtime environment, and the
compose stack as `docker compose config` resolves it (no Docker engine needed).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.deploy_tools import REPO_ROOT, MissingToolError, docker_config_dir, find_tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
ROOT_COMPOSE = REPO_ROOT / "compose.yaml"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    if not starts:
        raise ValueError("no FROM instruction: not a Dockerfile")
    return instructions[starts[-1] :]


def runtime_environment(stage: list[Instruction]) -> dict[str, str]:
    """The `ENV name=value ...` pairs of a stage (values without spaces or quotes)."""
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in instruction.arguments.split():
                name, separator, value = pair.partition("=")
                if not separator:
                    raise ValueError(f"ENV {instruction.arguments!r}: use the name=value form")
                env[name] = value
    return env


def image_runtime() -> list[Instruction]:
    return final_stage(parse_dockerfile(DOCKERFILE.read_text()))


def compose_config(
    compose_file: Path = ROOT_COMPOSE, *profiles: str, variables: dict[str, str] | None = None
) -> dict[str, Any]:
    """`docker compose config` of one file as JSON; raises with compose's own message.

    Uses the docker CLI with the compose plugin from `.tools/docker`, or the same compose
    binary standalone (`docker-compose`) where no docker CLI is installed. `variables`: the
    environment the file's `${...}` see (none of the caller's, by default)."""
    try:
        compose = [str(find_tool("docker")), "compose"]
    except MissingToolError:
        compose = [str(find_tool("docker-compose"))]
    command = [*compose, "-f", str(compose_file)]
    for profile in profiles:
        command += ["--profile", profile]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DOCKER_CONFIG": str(docker_config_dir()),
        **(variables or {}),
    }
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ValueError(f"{' '.join(command)} config failed:\n{result.stderr}")
    config: dict[str, Any] = json.loads(result.stdout)
    return config
