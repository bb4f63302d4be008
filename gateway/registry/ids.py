"""The charge point id rule shared by the gateway's handshake and the registry tools.

A valid id is 1-48 characters of OCPP's identifierString without `:` (OCPP-J forbids it in the
URL) and without `+` (an MQTT wildcard): letters, digits and `* - _ = | @ .`. An id made only
of dots is refused: `.` and `..` are path segments that URLs and file names give a meaning of
their own (`/..` is the parent), and they would make topics such as `../in`.
"""

from __future__ import annotations

import re

MAX_CP_ID_LENGTH = 48
_VALID_CP_ID = re.compile(rf"[A-Za-z0-9*\-_=|@.]{{1,{MAX_CP_ID_LENGTH}}}")


def is_valid_cp_id(cp_id: str) -> bool:
    return _VALID_CP_ID.fullmatch(cp_id) is not None and not _only_dots(cp_id)


def _only_dots(cp_id: str) -> bool:
    return cp_id.strip(".") == ""


def describe_invalid_cp_id(cp_id: str) -> str:
    """Why `cp_id` is refused, in words an operator can act on."""
    if not cp_id:
        return "the charge point id is empty"
    if len(cp_id) > MAX_CP_ID_LENGTH:
        return f"the charge point id is longer than {MAX_CP_ID_LENGTH} characters"
    if _only_dots(cp_id):
        return "the charge point id is made only of dots, which name directories, not charge points"
    bad = sorted({char for char in cp_id if not _VALID_CP_ID.fullmatch(char)})
    shown = " ".join(repr(char) for char in bad)
    return f"the charge point id contains characters that are not allowed: {shown}"
