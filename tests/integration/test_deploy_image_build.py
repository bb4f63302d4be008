"""The image's build stage, run without Docker: the build context that `.dockerignore` lets
through, and the build stage's RUN commands in order, with /opt/venv moved to a temporary
folder. Proves the lock file installs, satisfies the project (`pip check`) and that the
console scripts and the AWS and uvloop extras import. Downloads from PyPI: marked `slow`."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.deploy_files import DOCKERFILE, parse_dockerfile
from scripts.deploy_tools import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]

IMAGE_VENV = "/opt/venv"


def build_context(dockerignore: str, root: Path) -> list[Path]:
    """Files of `root` a Docker build would send, for an allow-list `.dockerignore`
    (`*`, then `!path` exceptions, then excluding patterns such as `**/__pycache__`)."""
    rules = [line.strip() for line in dockerignore.splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    if rules[:1] != ["*"]:
        raise ValueError(".dockerignore must start with `*` (an allow-list)")
    allowed = [rule[1:].rstrip("/") for rule in rules[1:] if rule.startswith("!")]
    excluded = [rule.removeprefix("**/") for rule in rules[1:] if not rule.startswith("!")]
    selected = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root)
        if not any(relative == Path(a) or Path(a) in relative.parents for a in allowed):
            continue
        if any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in excluded):
            continue
        selected.append(relative)
    return selected


def build_stage_commands(dockerfile: str) -> list[str]:
    instructions = parse_dockerfile(dockerfile)
    stages = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    build = instructions[stages[0] : stages[1]]
    return [instruction.arguments for instruction in build if instruction.keyword == "RUN"]


def test_build_context_is_the_allow_list(tmp_path: Path) -> None:
    for name in (
        "pyproject.toml",
        "gateway/a.py",
        "gateway/__pycache__/a.pyc",
        ".venv/x",
        "tests/t.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    ignore = "*\n!pyproject.toml\n!gateway/\n**/__pycache__\n"
    assert build_context(ignore, tmp_path) == [Path("gateway/a.py"), Path("pyproject.toml")]
    with pytest.raises(ValueError, match="allow-list"):
        build_context("tests\n", tmp_path)


def test_build_stage_installs_the_locked_project(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for relative in build_context((REPO_ROOT / ".dockerignore").read_text(), REPO_ROOT):
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, target)
    venv = tmp_path / "venv"
    # The image's python is python3.11 from the base image; here, the interpreter running the tests.
    base_bin = Path(sys.base_prefix) / "bin"
    env = {
        "PATH": f"{venv}/bin:{base_bin}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if not (base_bin / "python").exists():
        env["PATH"] = f"{venv}/bin:{tmp_path / 'bin'}:{os.environ.get('PATH', '')}"
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "python").symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    commands = build_stage_commands(DOCKERFILE.read_text())
    assert commands[0] == f"python -m venv {IMAGE_VENV}"
    for command in commands:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command.replace(IMAGE_VENV, str(venv))],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (
            f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    for script in ("ocpp-gateway", "ocpp-processor", "ocpp-things"):
        assert (venv / "bin" / script).is_file(), f"{script} was not installed"
    helped = subprocess.run(
        [str(venv / "bin" / "ocpp-gateway"), "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0, helped.stderr
