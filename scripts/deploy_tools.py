"""Where the deployment checks find their tools, with one clear message when one is missing.

`scripts/install_deploy_tools.sh` installs them under `.tools/` (or they may be on PATH).
Used by the deployment tests and by `scripts/tf_moto.py`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = Path(os.environ.get("TOOLS_DIR", REPO_ROOT / ".tools"))
INSTALL_HINT = "run `scripts/install_deploy_tools.sh` (the Makefile's `deploy-tools` target)"

# Where the install script puts each tool, relative to TOOLS_DIR.
_INSTALLED_AT = {
    "wscat": "node/bin/wscat",
    "checkov": "venv/bin/checkov",
    "hadolint": "venv/bin/hadolint",
    "docker-compose": "venv/bin/docker-compose",
}
_SYSTEM_DIRS = ("/usr/sbin", "/usr/local/bin")


class MissingToolError(RuntimeError):
    """A tool the deployment checks need is not installed."""


def find_tool(name: str) -> Path:
    """The executable `name`: from `.tools/`, else PATH, else /usr/sbin; raises with a fix."""
    candidates = []
    if name in _INSTALLED_AT:
        candidates.append(TOOLS_DIR / _INSTALLED_AT[name])
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    candidates.extend(Path(directory) / name for directory in _SYSTEM_DIRS)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise MissingToolError(f"`{name}` is required and was not found: {INSTALL_HINT}")


def jmeter_home() -> Path:
    """The JMeter 5.5 home assembled by the install script (or `JMETER_HOME`)."""
    home = Path(os.environ.get("JMETER_HOME", TOOLS_DIR / "jmeter"))
    if not (home / "bin" / "ApacheJMeter.jar").is_file():
        raise MissingToolError(f"JMeter was not found in {home}: {INSTALL_HINT}")
    return home


def docker_config_dir() -> Path:
    """A DOCKER_CONFIG folder whose cli-plugins hold `docker compose` (no engine needed)."""
    plugin = TOOLS_DIR / "docker" / "cli-plugins" / "docker-compose"
    if not plugin.exists():
        raise MissingToolError(f"docker compose was not found at {plugin}: {INSTALL_HINT}")
    return plugin.parent.parent
