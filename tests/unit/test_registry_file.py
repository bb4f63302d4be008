"""FileRegistry: loading, picking up changes while running, missing and unreadable files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.registry.file import FileRegistry
from gateway.registry.things_cli import main as things_cli
from tests.support.waiting import until


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[FileRegistry]:
    path = tmp_path / "things.txt"
    path.write_text("# depot\nCP1\n  CP2  secret  \n\nCP+3\n")
    registry = FileRegistry(path, poll_interval=0.02)
    await registry.start()
    yield registry
    await registry.close()


async def test_loads_ids_and_ignores_comments_blanks_and_extra_fields(
    started: FileRegistry,
) -> None:
    assert await started.is_registered("CP1")
    assert await started.is_registered("CP2")
    assert not await started.is_registered("secret")
    assert not await started.is_registered("CP3")
    assert started.ids == {"CP1", "CP2"}


async def test_invalid_lines_are_logged_with_their_line_number(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    path.write_text("CP1\nCP+3\n")
    registry = FileRegistry(path)
    with capture_logs() as logs:
        assert await registry.reload_if_changed()
    skipped = [entry for entry in logs if entry["event"] == "registry.file_line_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["line"] == 2
    assert "'+'" in skipped[0]["reason"]
    loaded = next(entry for entry in logs if entry["event"] == "registry.file_loaded")
    assert (loaded["ids"], loaded["skipped_lines"]) == (1, 1)


async def test_picks_up_a_change_made_by_ocpp_things_while_running(
    started: FileRegistry,
) -> None:
    assert not await started.is_registered("CP7")
    assert things_cli(["--file", str(started.path), "add", "CP7"]) == 0
    await until(lambda: "CP7" in started.ids, what="CP7 to be picked up from the file")
    assert things_cli(["--file", str(started.path), "remove", "CP1"]) == 0
    await until(lambda: "CP1" not in started.ids, what="CP1 to be removed")
    assert started.ids == {"CP2", "CP7"}


async def test_picks_up_an_append_in_place(started: FileRegistry) -> None:
    with started.path.open("a") as file:
        file.write("CP8\n")
    await until(lambda: "CP8" in started.ids, what="CP8 to be picked up from the file")


async def test_an_unchanged_file_is_not_read_again(started: FileRegistry) -> None:
    assert not await started.reload_if_changed()


async def test_missing_file_means_no_ids_one_warning_and_is_picked_up_when_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "things.txt"
    registry = FileRegistry(path)
    with capture_logs() as logs:
        await registry.reload_if_changed()
        await registry.reload_if_changed()
        await registry.reload_if_changed()
    assert not await registry.is_registered("CP1")
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["event"] == "registry.file_not_loaded"
    assert warnings[0]["path"] == str(path)
    assert "ocpp-things" in warnings[0]["hint"]
    assert things_cli(["--file", str(path), "add", "CP1"]) == 0
    assert await registry.reload_if_changed()
    assert await registry.is_registered("CP1")


async def test_start_with_a_missing_file_then_created_while_running(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    registry = FileRegistry(path, poll_interval=0.02)
    await registry.start()
    try:
        assert not await registry.is_registered("CP1")
        path.write_text("CP1\n")
        await until(lambda: "CP1" in registry.ids, what="the new file to be loaded")
    finally:
        await registry.close()


async def test_a_file_that_disappears_keeps_the_last_good_set(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    path.write_text("CP1\n")
    registry = FileRegistry(path)
    await registry.reload_if_changed()
    path.unlink()
    with capture_logs() as logs:
        assert not await registry.reload_if_changed()
        assert not await registry.reload_if_changed()
    assert await registry.is_registered("CP1")
    assert [entry["event"] for entry in logs] == ["registry.file_kept_last_good"]
    assert logs[0]["problem"] == "missing"
    assert logs[0]["ids"] == 1


async def test_an_unreadable_file_keeps_the_last_good_set_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    path.write_text("CP1\n")
    registry = FileRegistry(path)
    await registry.reload_if_changed()
    path.write_bytes(b"CP1\nCP2\n\xff\xfe broken\n")
    with capture_logs() as logs:
        assert not await registry.reload_if_changed()
        assert not await registry.reload_if_changed()  # the same bad version is not read again
    assert registry.ids == {"CP1"}
    assert [entry["event"] for entry in logs] == ["registry.file_kept_last_good"]
    assert "codec can't decode" in logs[0]["problem"]
    path.write_text("CP1\nCP2\n")
    assert await registry.reload_if_changed()
    assert registry.ids == {"CP1", "CP2"}


async def test_a_directory_in_place_of_the_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    os.mkdir(path)
    registry = FileRegistry(path)
    with capture_logs() as logs:
        assert not await registry.reload_if_changed()
    assert logs[0]["event"] == "registry.file_not_loaded"
    assert "Is a directory" in logs[0]["problem"]


def test_poll_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="poll_interval must be > 0"):
        FileRegistry(tmp_path / "things.txt", poll_interval=0)
