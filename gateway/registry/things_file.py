"""The registry file's format, read and edited without losing comments or order.

One charge point id per line. Surrounding whitespace is ignored, and so are blank lines and
lines whose first non-blank character is `#`. Whatever follows the id after whitespace is kept
in the file but not used yet (it is reserved for per-charge-point credentials)::

    # Charge points allowed to connect
    CP1
    CP2   hall B, bay 4

Edits are pure functions from text to text; `write_atomically` replaces the file in one rename
so that a running gateway reads either the old or the new content, never half of it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id

COMMENT = "#"
NEW_FILE_HEADER = (
    "# Charge point ids allowed to connect to the gateway, one per line.\n"
    "# Blank lines and lines starting with # are ignored. Edit with `ocpp-things`.\n"
)


@dataclass(frozen=True)
class LineProblem:
    line_number: int
    text: str
    reason: str


@dataclass(frozen=True)
class ParsedThings:
    ids: frozenset[str]
    problems: tuple[LineProblem, ...]


def line_cp_id(line: str) -> str | None:
    """The id a line declares, or None for a blank or comment line. The id is not validated."""
    stripped = line.strip()
    if not stripped or stripped.startswith(COMMENT):
        return None
    return stripped.split(maxsplit=1)[0]


def parse_things(text: str) -> ParsedThings:
    """Every valid id in the file, and a problem for each line whose id is not valid."""
    ids: set[str] = set()
    problems: list[LineProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        cp_id = line_cp_id(line)
        if cp_id is None:
            continue
        if is_valid_cp_id(cp_id):
            ids.add(cp_id)
        else:
            problems.append(LineProblem(number, line.strip(), describe_invalid_cp_id(cp_id)))
    return ParsedThings(frozenset(ids), tuple(problems))


def listed_ids(text: str) -> list[str]:
    """The ids in file order, each once, including invalid ones (so they can be removed)."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        cp_id = line_cp_id(line)
        if cp_id is not None:
            seen.setdefault(cp_id, None)
    return list(seen)


@dataclass(frozen=True)
class Edit:
    text: str
    changed: list[str]
    unchanged: list[str]


def add_ids(text: str, cp_ids: Iterable[str]) -> Edit:
    """Append the ids not present yet, one line each; `unchanged` lists those already there."""
    present = set(listed_ids(text))
    added: list[str] = []
    unchanged: list[str] = []
    for cp_id in dict.fromkeys(cp_ids):
        if cp_id in present:
            unchanged.append(cp_id)
            continue
        present.add(cp_id)
        added.append(cp_id)
    if not added:
        return Edit(text, [], unchanged)
    if text and not text.endswith(("\n", "\r")):
        text += "\n"
    return Edit(text + "".join(f"{cp_id}\n" for cp_id in added), added, unchanged)


def remove_ids(text: str, cp_ids: Iterable[str]) -> Edit:
    """Drop every line declaring one of the ids; `unchanged` lists ids that were not there."""
    wanted = dict.fromkeys(cp_ids)
    kept: list[str] = []
    removed: dict[str, None] = {}
    for line in text.splitlines(keepends=True):
        cp_id = line_cp_id(line)
        if cp_id is not None and cp_id in wanted:
            removed.setdefault(cp_id, None)
        else:
            kept.append(line)
    return Edit("".join(kept), list(removed), [cp_id for cp_id in wanted if cp_id not in removed])


def read_things(path: Path) -> str:
    """The file's text ("" when it does not exist); line endings are kept as they are."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            return file.read()
    except FileNotFoundError:
        return ""


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` through a temporary file renamed over it.

    A symbolic link is followed, so the file it points to is replaced, not the link. An existing
    file keeps its permission bits; a new one gets the usual ones (0666 minus the umask).
    """
    target = path.resolve()
    mode = _mode_for(target)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(target.parent)


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform or file system allows it.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
