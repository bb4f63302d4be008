"""Fleet charge point ids from a pattern."""

from __future__ import annotations

import pytest

from simulator.fleet.ids import IdPatternError, expand_ids, pattern_from_prefix


def test_default_style_pattern_numbers_from_one() -> None:
    assert expand_ids("LOAD{n:05d}", 3) == ["LOAD00001", "LOAD00002", "LOAD00003"]


def test_start_and_plain_field() -> None:
    assert expand_ids("CP-{n}", 3, start=98) == ["CP-98", "CP-99", "CP-100"]


def test_width_is_a_minimum_so_ids_stay_distinct() -> None:
    ids = expand_ids("X{n:02d}", 120)
    assert ids[0] == "X01"
    assert ids[-1] == "X120"
    assert len(set(ids)) == 120


def test_field_may_sit_anywhere_and_braces_can_be_escaped() -> None:
    assert expand_ids("{{site}}-{n:03d}-A", 1) == ["{site}-001-A"]


def test_zero_count_gives_no_ids() -> None:
    assert expand_ids("LOAD{n}", 0) == []


def test_prefix_is_shorthand_for_a_five_digit_pattern() -> None:
    assert expand_ids(pattern_from_prefix("SITE7-"), 2) == ["SITE7-00001", "SITE7-00002"]
    assert expand_ids(pattern_from_prefix("odd{name}"), 1) == ["odd{name}00001"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("LOAD", "must contain the field {n} exactly once"),
        ("LOAD{n}{n}", "must contain the field {n} exactly once"),
        ("LOAD{i}", "must contain the field {n} exactly once"),
        ("{site}{n}", "must contain the field {n} exactly once"),
        ("LOAD{}", "must contain the field {n} exactly once"),
        ("LOAD{n", "is malformed"),
        ("LOAD{n:s}", "cannot format a number"),
    ],
)
def test_bad_patterns_say_what_is_wrong(pattern: str, message: str) -> None:
    with pytest.raises(IdPatternError, match=message.replace("{", r"\{").replace("}", r"\}")):
        expand_ids(pattern, 5)


def test_pattern_giving_one_id_to_two_numbers_is_refused() -> None:
    with pytest.raises(IdPatternError, match="same id to different numbers"):
        expand_ids("E{n:.0e}", 3, start=10)  # 10 and 11 both print as 1e+01


def test_negative_count_is_refused() -> None:
    with pytest.raises(IdPatternError, match=">= 0"):
        expand_ids("LOAD{n}", -1)
