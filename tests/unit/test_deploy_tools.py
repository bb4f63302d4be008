"""A missing deployment tool fails with the command that installs it, never a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import deploy_tools


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(deploy_tools, "TOOLS_DIR", tmp_path / "tools")
    monkeypatch.setattr(deploy_tools, "_SYSTEM_DIRS", ())
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("JMETER_HOME", raising=False)
    return tmp_path


@pytest.mark.usefixtures("no_tools")
@pytest.mark.parametrize("tool", ["wscat", "checkov", "hadolint", "haproxy", "tmux", "java"])
def test_missing_tool_names_the_install_script(tool: str) -> None:
    with pytest.raises(deploy_tools.MissingToolError, match=r"scripts/install_deploy_tools\.sh"):
        deploy_tools.find_tool(tool)


@pytest.mark.usefixtures("no_tools")
def test_missing_jmeter_and_compose_name_the_install_script() -> None:
    with pytest.raises(deploy_tools.MissingToolError, match=r"install_deploy_tools\.sh"):
        deploy_tools.jmeter_home()
    with pytest.raises(deploy_tools.MissingToolError, match=r"install_deploy_tools\.sh"):
        deploy_tools.docker_config_dir()


def test_installed_tool_is_found_in_the_tools_folder(no_tools: Path) -> None:
    wscat = deploy_tools.TOOLS_DIR / "node" / "bin" / "wscat"
    wscat.parent.mkdir(parents=True)
    wscat.write_text("#!/bin/sh\n")
    wscat.chmod(0o755)
    assert deploy_tools.find_tool("wscat") == wscat


def test_a_file_that_is_not_executable_does_not_count(no_tools: Path) -> None:
    hadolint = deploy_tools.TOOLS_DIR / "venv" / "bin" / "hadolint"
    hadolint.parent.mkdir(parents=True)
    hadolint.write_text("")
    with pytest.raises(deploy_tools.MissingToolError):
        deploy_tools.find_tool("hadolint")
