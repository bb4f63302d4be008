"""`Mirror`: the set of registered ids as last read in full from the registry, kept current.

A sync reads the whole registry page by page (ListThings, a DynamoDB Scan) while charge points
keep connecting, so the mirror also hears of single changes during it: an id found by a per-id
lookup (a Thing created since), an id that left (a Thing-deleted event). Those changes are newer
than the page that may have carried the id, so they win when the sync ends.

- First sync: each page is added at once, so the ids read so far are known before it ends;
  nothing can be removed yet. `complete` turns true when it ends.
- Later syncs (re-syncs): pages are collected aside and replace the set when the sync ends,
  which is how ids deleted without an event (or while the events were missed) go away.

No I/O and no clock: the registry wrapper (`mirrored.py`) reads the pages and decides when.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SyncResult:
    """What a finished sync changed: how many ids it added, which it removed, how many it holds."""

    added: int
    removed: frozenset[str]
    ids: int


class Mirror:
    def __init__(self) -> None:
        self._ids: set[str] = set()
        self.complete = False
        # During a sync: the ids it has read so far, and the single changes heard meanwhile
        # (id -> registered), which override what the sync read.
        self._incoming: set[str] | None = None
        self._changed: dict[str, bool] = {}

    def __contains__(self, cp_id: object) -> bool:
        return cp_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def syncing(self) -> bool:
        return self._incoming is not None

    def begin_sync(self) -> None:
        """Start reading the registry in full; a sync still under way is abandoned."""
        self._incoming = set()
        self._changed = {}

    def add_page(self, ids: Iterable[str]) -> None:
        """Ids of one page of the sync under way."""
        if self._incoming is None:
            raise RuntimeError("add_page() without begin_sync()")
        page = [cp_id for cp_id in ids if self._changed.get(cp_id, True)]
        self._incoming.update(page)
        if not self.complete:
            self._ids.update(page)  # the first sync: known at once, nothing to remove yet

    def finish_sync(self) -> SyncResult:
        """The sync read every page: its ids, with the changes heard meanwhile, are the mirror."""
        if self._incoming is None:
            raise RuntimeError("finish_sync() without begin_sync()")
        incoming = self._incoming
        for cp_id, registered in self._changed.items():
            if registered:
                incoming.add(cp_id)
            else:
                incoming.discard(cp_id)
        before = self._ids if self.complete else set()  # the first sync filled `_ids` as it read
        result = SyncResult(
            added=len(incoming - before), removed=frozenset(before - incoming), ids=len(incoming)
        )
        self._ids = incoming
        self._incoming = None
        self._changed = {}
        self.complete = True
        return result

    def abandon_sync(self) -> None:
        """The sync failed or was stopped: keep the mirror as it is (the first sync's pages
        included), and its single changes, which were applied as they came."""
        self._incoming = None
        self._changed = {}

    def add(self, cp_id: str) -> None:
        """`cp_id` was found registered by a lookup of its own."""
        self._ids.add(cp_id)
        if self._incoming is not None:
            self._changed[cp_id] = True

    def remove(self, cp_id: str) -> None:
        """`cp_id` left the registry (its Thing was deleted)."""
        self._ids.discard(cp_id)
        if self._incoming is not None:
            self._changed[cp_id] = False
