"""One live session per charge point inside this gateway process (newest wins)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.session import Session


class SessionTable:
    def __init__(self) -> None:
        self._by_cp_id: dict[str, Session] = {}

    def install(self, session: Session) -> Session | None:
        """Make `session` the charge point's live session; return the one it replaces."""
        previous = self._by_cp_id.get(session.cp_id)
        self._by_cp_id[session.cp_id] = session
        return previous

    def get(self, cp_id: str) -> Session | None:
        return self._by_cp_id.get(cp_id)

    def is_current(self, session: Session) -> bool:
        return self._by_cp_id.get(session.cp_id) is session

    def remove(self, session: Session) -> None:
        """Forget `session`, unless a newer session for the same charge point took its place."""
        if self._by_cp_id.get(session.cp_id) is session:
            del self._by_cp_id[session.cp_id]

    def held_back(self, longer_than: float, now: float) -> int:
        """Sessions whose CP frame has waited for the broker for more than `longer_than` s."""
        return sum(
            1
            for session in self._by_cp_id.values()
            if session.publishing_since is not None and now - session.publishing_since > longer_than
        )

    def __len__(self) -> int:
        return len(self._by_cp_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_cp_id.values()))
