"""The registry file's format: parsing, comment-preserving edits, atomic replacement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.registry.things_file import (
    add_ids,
    line_cp_id,
    listed_ids,
    parse_things,
    read_things,
    remove_ids,
    write_atomically,
)

SAMPLE = """\
# Charge points of depot 1

CP1
  CP2   hall B, bay 4
\tCP-3\t# trailing note
# CP4 is commented out
CP1
"""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("CP1", "CP1"),
        ("  CP1  ", "CP1"),
        ("CP1 secret-hash", "CP1"),
        ("CP1\tsecret", "CP1"),
        ("", None),
        ("   ", None),
        ("# CP1", None),
        ("   #CP1", None),
    ],
)
def test_line_cp_id(line: str, expected: str | None) -> None:
    assert line_cp_id(line) == expected


def test_parse_keeps_only_ids() -> None:
    parsed = parse_things(SAMPLE)
    assert parsed.ids == {"CP1", "CP2", "CP-3"}
    assert parsed.problems == ()


def test_parse_reports_invalid_lines_and_keeps_the_others() -> None:
    parsed = parse_things("CP1\nCP+2\n" + "A" * 49 + "\nCP3\n")
    assert parsed.ids == {"CP1", "CP3"}
    assert [(p.line_number, p.text) for p in parsed.problems] == [(2, "CP+2"), (3, "A" * 49)]
    assert "'+'" in parsed.problems[0].reason
    assert "longer than 48" in parsed.problems[1].reason


def test_parse_accepts_windows_line_endings() -> None:
    assert parse_things("CP1\r\nCP2\r\n").ids == {"CP1", "CP2"}


def test_listed_ids_keeps_file_order_once_each() -> None:
    assert listed_ids(SAMPLE) == ["CP1", "CP2", "CP-3"]


def test_add_appends_new_ids_and_keeps_everything_else() -> None:
    edit = add_ids(SAMPLE, ["CP9", "CP2", "CP8", "CP9"])
    assert edit.changed == ["CP9", "CP8"]
    assert edit.unchanged == ["CP2"]
    assert edit.text == SAMPLE + "CP9\nCP8\n"


def test_add_to_a_file_without_final_newline() -> None:
    assert add_ids("CP1", ["CP2"]).text == "CP1\nCP2\n"


def test_adding_only_existing_ids_changes_nothing() -> None:
    edit = add_ids(SAMPLE, ["CP1"])
    assert (edit.text, edit.changed, edit.unchanged) == (SAMPLE, [], ["CP1"])


def test_remove_drops_every_line_of_the_id_and_keeps_comments() -> None:
    edit = remove_ids(SAMPLE, ["CP1", "CP2", "CP7"])
    assert edit.changed == ["CP1", "CP2"]
    assert edit.unchanged == ["CP7"]
    assert edit.text == (
        "# Charge points of depot 1\n\n\tCP-3\t# trailing note\n# CP4 is commented out\n"
    )


def test_remove_keeps_windows_line_endings() -> None:
    assert remove_ids("CP1\r\nCP2\r\nCP3\r\n", ["CP2"]).text == "CP1\r\nCP3\r\n"


def test_read_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_things(tmp_path / "absent.txt") == ""


def test_read_drops_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    path.write_bytes(b"\xef\xbb\xbfCP1\n")
    assert parse_things(read_things(path)).ids == {"CP1"}


def test_write_atomically_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    path.write_text("CP1\n")
    path.chmod(0o640)
    inode_before = path.stat().st_ino
    write_atomically(path, "CP1\nCP2\n")
    assert path.read_text() == "CP1\nCP2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode_before  # replaced by a rename, not rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["things.txt"]  # no temporary file left behind


def test_write_atomically_follows_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("CP1\n")
    link = tmp_path / "things.txt"
    link.symlink_to(target)
    write_atomically(link, "CP2\n")
    assert link.is_symlink()
    assert target.read_text() == "CP2\n"


def test_write_atomically_creates_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "things.txt"
    write_atomically(path, "CP1\n")
    assert path.read_text() == "CP1\n"


def test_write_atomically_into_a_missing_directory_fails_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "absent" / "things.txt", "CP1\n")
    assert os.listdir(tmp_path) == []
