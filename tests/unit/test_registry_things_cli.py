"""`ocpp-things`: add, remove and list charge points in the registry file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.registry.things_cli import main


@pytest.fixture
def things(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry file path in an empty working directory (so no `.env` is picked up)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_REGISTRY_FILE", raising=False)
    return tmp_path / "things.txt"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_creates_the_file_and_prints_json_like_the_aws_cli(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--file", str(things), "add", "CP2")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"thingName": "CP2"}
    assert things.read_text().startswith("# ")
    assert things.read_text().endswith("\nCP2\n")


def test_add_several_prints_one_json_object_per_line(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "add", "CP2", "CP3", "--file", str(things))
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"thingName": "CP2"},
        {"thingName": "CP3"},
    ]


def test_add_keeps_comments_and_order(things: Path, capsys: pytest.CaptureFixture[str]) -> None:
    things.write_text("# depot\nCP9  note\n\nCP1\n")
    assert run(capsys, "--file", str(things), "add", "CP2")[0] == 0
    assert things.read_text() == "# depot\nCP9  note\n\nCP1\nCP2\n"


def test_adding_an_existing_id_says_so_and_succeeds(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    things.write_text("CP1\n")
    modified = things.stat().st_mtime_ns
    code, out, err = run(capsys, "--file", str(things), "add", "CP1")
    assert code == 0
    assert json.loads(out) == {"thingName": "CP1"}
    assert "CP1 is already registered" in err
    assert things.stat().st_mtime_ns == modified  # not rewritten


@pytest.mark.parametrize("bad_id", ["CP 2", "CP+2", "CP#2", "CP:2", "A" * 49, ""])
def test_invalid_id_exits_2_with_a_clear_message_and_changes_nothing(
    things: Path, capsys: pytest.CaptureFixture[str], bad_id: str
) -> None:
    things.write_text("CP1\n")
    code, out, err = run(capsys, "--file", str(things), "add", "CP2", bad_id)
    assert code == 2
    assert out == ""
    assert f"invalid charge point id {bad_id!r}" in err
    assert "nothing was changed" in err
    assert things.read_text() == "CP1\n"


def test_remove_deletes_the_id_and_keeps_the_rest(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    things.write_text("# depot\nCP1\nCP2 secret\nCP3\n")
    code, out, err = run(capsys, "--file", str(things), "remove", "CP2")
    assert (code, out, err) == (0, "", "")
    assert things.read_text() == "# depot\nCP1\nCP3\n"


def test_removing_an_absent_id_says_so_and_succeeds(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    things.write_text("CP1\n")
    code, _, err = run(capsys, "--file", str(things), "remove", "CP7")
    assert code == 0
    assert "CP7 is not registered" in err
    assert things.read_text() == "CP1\n"


def test_remove_can_clean_up_an_invalid_line_but_refuses_an_invalid_absent_id(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    things.write_text("CP1\nCP+2\n")
    assert run(capsys, "--file", str(things), "remove", "CP+2")[0] == 0
    assert things.read_text() == "CP1\n"
    code, _, err = run(capsys, "--file", str(things), "remove", "CP1", "CP#9")
    assert code == 2
    assert "invalid charge point id 'CP#9'" in err
    assert things.read_text() == "CP1\n"


def test_list_prints_the_ids_in_file_order(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    things.write_text("# depot\nCP2\nCP1 secret\nCP2\n")
    code, out, err = run(capsys, "--file", str(things), "list")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"things": [{"thingName": "CP2"}, {"thingName": "CP1"}]}


def test_list_points_at_lines_the_gateway_ignores(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    things.write_text("CP1\nCP 2 is here\nCP+3\n")
    code, out, err = run(capsys, "--file", str(things), "list")
    assert code == 0
    assert json.loads(out) == {"things": [{"thingName": "CP1"}, {"thingName": "CP"}]}
    assert f"{things}:3: ignored by the gateway" in err


def test_list_of_a_missing_file_is_empty(things: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--file", str(things), "list")
    assert code == 0
    assert json.loads(out) == {"things": []}
    assert "does not exist yet" in err


def test_file_defaults_to_the_gateway_setting(
    things: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY_FILE", str(things.with_name("from-env.txt")))
    assert run(capsys, "add", "CP5")[0] == 0
    assert things.with_name("from-env.txt").read_text().endswith("CP5\n")


def test_file_default_without_setting_is_the_gateway_default(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "add", "CP5")[0] == 0
    assert (things.parent / "things.txt").read_text().endswith("CP5\n")


def test_an_unrelated_invalid_gateway_setting_does_not_matter(
    things: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "not-a-port")
    assert run(capsys, "--file", str(things), "add", "CP5")[0] == 0


def test_missing_directory_exits_1_and_names_it(
    things: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = things.parent / "absent" / "things.txt"
    code, out, err = run(capsys, "--file", str(missing), "add", "CP1")
    assert (code, out) == (1, "")
    assert f"the directory {missing.parent} does not exist" in err


def test_usage_errors_exit_2(things: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys)[0] == 2
    assert run(capsys, "add")[0] == 2
    assert run(capsys, "rename", "CP1")[0] == 2


def test_help_exits_0(things: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "add" in out and "remove" in out and "list" in out


def test_runs_as_a_module(things: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.registry.things_cli", "--file", str(things), "add", "CP4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"thingName": "CP4"}


def checkout(root: Path) -> Path:
    """A minimal repository layout: pyproject.toml and config/things.txt with CP1."""
    (root / "config").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "config" / "things.txt").write_text("# registered\nCP1\n")
    return root / "config" / "things.txt"


def test_inside_a_checkout_the_default_is_its_config_things_file(
    things: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = checkout(things.parent / "repo")
    nested = things.parent / "repo" / "simulator" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert json.loads(out) == {"things": [{"thingName": "CP1"}]}
    assert run(capsys, "add", "CP2")[0] == 0
    assert registry.read_text().endswith("\nCP1\nCP2\n")
    assert not (nested / "things.txt").exists()


def test_the_setting_wins_over_the_checkout_file(
    things: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = checkout(things.parent / "repo")
    monkeypatch.chdir(registry.parent.parent)
    monkeypatch.setenv("GATEWAY_REGISTRY_FILE", str(things))
    assert run(capsys, "add", "CP5")[0] == 0
    assert things.read_text().endswith("CP5\n")
    assert "CP5" not in registry.read_text()


def test_this_repository_lists_cp1_by_default() -> None:
    """As on a fresh clone: `ocpp-things list` from the repository root shows CP1."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_REGISTRY_FILE"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.registry.things_cli", "list"],
        cwd=root / "simulator",
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert {"thingName": "CP1"} in json.loads(result.stdout)["things"]
