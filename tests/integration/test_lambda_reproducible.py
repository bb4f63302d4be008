"""`make lambda` gives the same bytes from two clones in different folders.

Each clone gets a virtualenv of its own with the same library versions installed by pip, as
`make install` does there: console scripts then carry each folder's path in their `#!` line,
which must not reach the zip."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGED_LIBRARIES = ["ocpp", "structlog", "packaging"]

pytestmark = pytest.mark.integration


def pins() -> list[str]:
    """The versions installed here of what the build copies (and `packaging`, which it runs)."""
    found: dict[str, str] = {}
    pending = list(PACKAGED_LIBRARIES)
    while pending:
        distribution = metadata.distribution(pending.pop())
        name = distribution.metadata["Name"]
        if name in found:
            continue
        found[name] = distribution.version
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return sorted(f"{name}=={version}" for name, version in found.items())


def clone(folder: Path) -> Path:
    """The files the build reads, and a virtualenv with the pinned libraries, in `folder`."""
    shutil.copytree(
        REPO_ROOT / "processor", folder / "processor", ignore=shutil.ignore_patterns("__pycache__")
    )
    (folder / "scripts").mkdir()
    shutil.copy2(REPO_ROOT / "scripts" / "build_lambda.py", folder / "scripts")
    venv.create(folder / ".venv", with_pip=True)
    python = folder / ".venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *pins()],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return python


def build(folder: Path) -> bytes:
    python = clone(folder)
    output = folder / "build" / "processor-lambda.zip"
    subprocess.run(
        [str(python), str(folder / "scripts" / "build_lambda.py"), "--output", str(output)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return output.read_bytes()


@pytest.mark.skipif(sys.platform != "linux", reason="the Lambda is built on Linux")
def test_two_clones_in_different_folders_build_the_same_zip(tmp_path: Path) -> None:
    first = build(tmp_path / "one")
    second = build(tmp_path / "somewhere" / "else" / "two")
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
