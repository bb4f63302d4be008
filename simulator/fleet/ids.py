"""Charge point ids of a fleet, from a pattern such as `LOAD{n:05d}`."""

from __future__ import annotations

from string import Formatter

DEFAULT_PATTERN = "LOAD{n:05d}"


class IdPatternError(ValueError):
    """The pattern cannot number charge points."""


def check_pattern(pattern: str) -> None:
    """A pattern has exactly one field, `{n}` with an optional integer format spec."""
    try:
        fields = [parsed for parsed in Formatter().parse(pattern) if parsed[1] is not None]
    except ValueError as exc:
        raise IdPatternError(f"id pattern {pattern!r} is malformed: {exc}") from None
    if [name for _, name, _, _ in fields] != ["n"]:
        raise IdPatternError(
            f"id pattern {pattern!r} must contain the field {{n}} exactly once "
            "(e.g. LOAD{n:05d}) and no other field"
        )
    try:
        pattern.format(n=1)
    except (ValueError, TypeError) as exc:
        raise IdPatternError(f"id pattern {pattern!r} cannot format a number: {exc}") from None


def expand_ids(pattern: str, count: int, start: int = 1) -> list[str]:
    """`count` distinct ids numbered from `start`: LOAD00001, LOAD00002, ..."""
    if count < 0:
        raise IdPatternError(f"the number of charge points must be >= 0, not {count}")
    check_pattern(pattern)
    ids = [pattern.format(n=n) for n in range(start, start + count)]
    if len(set(ids)) != len(ids):
        raise IdPatternError(f"id pattern {pattern!r} gives the same id to different numbers")
    if any(not cp_id for cp_id in ids):
        raise IdPatternError(f"id pattern {pattern!r} gives empty ids")
    return ids


def pattern_from_prefix(prefix: str) -> str:
    """`--id-prefix LOAD` is shorthand for `--id-pattern LOAD{n:05d}`."""
    return prefix.replace("{", "{{").replace("}", "}}") + "{n:05d}"
