"""The mirror of the registry: first read, re-reads, and single changes heard during a read."""

from __future__ import annotations

import pytest

from gateway.registry.mirror import Mirror


def test_the_first_sync_knows_each_page_as_it_arrives_and_is_complete_at_its_end() -> None:
    mirror = Mirror()
    mirror.begin_sync()
    mirror.add_page(["CP1", "CP2"])
    assert "CP1" in mirror and not mirror.complete
    mirror.add_page(["CP3"])
    result = mirror.finish_sync()
    assert mirror.complete and len(mirror) == 3
    assert (result.added, result.removed, result.ids) == (3, frozenset(), 3)


def test_a_resync_replaces_the_ids_at_its_end_only() -> None:
    mirror = Mirror()
    mirror.begin_sync()
    mirror.add_page(["CP1", "CP2"])
    mirror.finish_sync()
    mirror.begin_sync()
    mirror.add_page(["CP2", "CP3"])
    assert "CP1" in mirror and "CP3" not in mirror  # still the previous read
    result = mirror.finish_sync()
    assert "CP1" not in mirror and "CP3" in mirror
    assert (result.added, result.removed, result.ids) == (1, frozenset({"CP1"}), 2)


def test_an_id_removed_during_a_sync_stays_removed_though_a_page_carried_it() -> None:
    mirror = Mirror()
    mirror.begin_sync()
    mirror.add_page(["CP1"])
    mirror.remove("CP1")  # a Thing-deleted event, newer than the page
    mirror.remove("CP2")
    mirror.add_page(["CP2"])  # a later page read before the deletion
    mirror.finish_sync()
    assert "CP1" not in mirror and "CP2" not in mirror


def test_an_id_found_during_a_resync_stays_though_no_page_carried_it() -> None:
    mirror = Mirror()
    mirror.begin_sync()
    mirror.finish_sync()
    mirror.begin_sync()
    mirror.add("CP9")  # created after its page was read
    mirror.add_page(["CP1"])
    mirror.finish_sync()
    assert "CP9" in mirror and "CP1" in mirror


def test_changes_outside_a_sync_apply_at_once() -> None:
    mirror = Mirror()
    mirror.add("CP1")
    assert "CP1" in mirror and not mirror.complete
    mirror.remove("CP1")
    assert "CP1" not in mirror


def test_an_abandoned_resync_keeps_the_previous_ids() -> None:
    mirror = Mirror()
    mirror.begin_sync()
    mirror.add_page(["CP1"])
    mirror.finish_sync()
    mirror.begin_sync()
    mirror.add_page(["CP2"])
    mirror.abandon_sync()
    assert "CP1" in mirror and "CP2" not in mirror and not mirror.syncing


def test_pages_need_a_sync() -> None:
    with pytest.raises(RuntimeError, match="begin_sync"):
        Mirror().add_page(["CP1"])
    with pytest.raises(RuntimeError, match="begin_sync"):
        Mirror().finish_sync()
