"""The connected-CP API's decisions: closes asked for, paging, entries, tokens, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.admin.api import (
    MAX_PAGE,
    OPERATOR_CLOSE,
    describe,
    iso_utc,
    page,
    page_limit,
    requested_close,
    token_matches,
)
from gateway.admin.cli import table
from gateway.closes import Close
from gateway.cp_stats import CpStats
from gateway.settings import Settings

TOKEN = "s3cret-token-0123456789"


@dataclass
class FakeSession:
    cp_id: str
    subprotocol: str = "ocpp2.0.1"
    connection_number: int = 1
    closed: list[Close] = field(default_factory=list)

    async def close(self, close: Close) -> None:
        self.closed.append(close)


@pytest.mark.parametrize(
    ("query", "body", "expected"),
    [
        ({}, b"", OPERATOR_CLOSE),
        ({"code": ["4000"]}, b"", Close(4000, "closed by operator")),
        ({"code": ["1001"], "reason": ["bye"]}, b"", Close(1001, "bye")),
        ({}, b'{"code": 3000, "reason": "firmware"}', Close(3000, "firmware")),
        ({"code": ["1000"]}, b'{"code": 4999}', Close(4999, "closed by operator")),
        ({}, b'{"reason": ""}', Close(1000, "")),
        ({}, b"  \n", OPERATOR_CLOSE),
        ({}, ('{"reason": "' + "é" * 61 + '"}').encode(), Close(1000, "é" * 61)),
    ],
)
def test_requested_closes(query: dict[str, list[str]], body: bytes, expected: Close) -> None:
    assert requested_close(query, body) == expected


@pytest.mark.parametrize(
    ("query", "body", "problem"),
    [
        ({"code": ["1005"]}, b"", "not allowed"),
        ({"code": ["1002"]}, b"", "not allowed"),
        ({"code": ["2999"]}, b"", "not allowed"),
        ({"code": ["5000"]}, b"", "not allowed"),
        ({"code": ["abc"]}, b"", "integer"),
        ({"code": ["-1"]}, b"", "integer"),
        ({}, b'{"code": "4000x"}', "integer"),
        ({}, b'{"code": true}', "integer"),
        ({}, b'{"code": 4000.5}', "integer"),
        ({}, b'{"reason": 7}', "string"),
        ({}, ('{"reason": "' + "x" * 124 + '"}').encode(), "124 bytes"),
        ({}, ('{"reason": "' + "é" * 62 + '"}').encode(), "124 bytes"),
        ({}, b"not json", "not JSON"),
        ({}, b"[1000]", "JSON object"),
        ({}, b'{"code": 1000, "why": "x"}', "unknown field(s) why"),
    ],
)
def test_bad_closes_are_refused_with_the_reason(
    query: dict[str, list[str]], body: bytes, problem: str
) -> None:
    answer = requested_close(query, body)
    assert isinstance(answer, str)
    assert problem in answer


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("250", 250), (str(MAX_PAGE), MAX_PAGE)])
def test_page_limits(text: str, expected: int) -> None:
    assert page_limit({"limit": [text]}) == expected


@pytest.mark.parametrize("text", ["0", "-1", "x", "", str(MAX_PAGE + 1), "1.5"])
def test_bad_page_limits(text: str) -> None:
    assert isinstance(page_limit({"limit": [text]}), str)


def test_paging_walks_20000_cps_in_id_order_without_repeats() -> None:
    sessions = [FakeSession(f"CP{number:05d}") for number in reversed(range(20_000))]
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        chosen, after = page(sessions, 1500, after)
        seen.extend(session.cp_id for session in chosen)
        pages += 1
        if after is None:
            break
    assert seen == sorted(session.cp_id for session in sessions)
    assert pages == 14


def test_paging_edges() -> None:
    sessions = [FakeSession(cp_id) for cp_id in ("b", "a", "c")]
    assert page([], 10, None) == ([], None)
    chosen, cursor = page(sessions, 3, None)
    assert [s.cp_id for s in chosen] == ["a", "b", "c"] and cursor is None
    chosen, cursor = page(sessions, 2, None)
    assert [s.cp_id for s in chosen] == ["a", "b"] and cursor == "b"
    chosen, cursor = page(sessions, 2, "a0")  # a cursor that is no longer connected
    assert [s.cp_id for s in chosen] == ["b", "c"] and cursor is None
    assert page(sessions, 2, "z") == ([], None)


def test_entries_before_and_after_the_session_records_stats() -> None:
    session: Any = FakeSession("CP1", "ocpp1.6", 7)
    entry = describe(session)
    assert entry["id"] == "CP1" and entry["connection"] == 7 and entry["subprotocol"] == "ocpp1.6"
    assert entry["remote"] is None and entry["frames_in"] is None
    session.stats = CpStats(since=1714557600.0)
    session.stats.frame_in(100)
    session.stats.frame_in(50)
    session.stats.frame_out(20)
    entry = describe(session)
    assert entry["connected_since"] == "2024-05-01T10:00:00.000Z"
    assert (entry["frames_in"], entry["bytes_in"]) == (2, 150)
    assert (entry["frames_out"], entry["bytes_out"]) == (1, 20)
    assert entry["last_frame_at"] is not None


def test_iso_utc() -> None:
    assert iso_utc(None) is None
    assert iso_utc(0.5) == "1970-01-01T00:00:00.500Z"


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer  {TOKEN} ", True),
        (None, False),
        ("", False),
        (TOKEN, False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer ", False),
        ("Bearer é", False),
    ],
)
def test_token_matching(header: str | None, matches: bool) -> None:
    assert token_matches(header, TOKEN) is matches


def test_table_shows_dashes_for_missing_values() -> None:
    text = table([{"id": "CP1", "connection": 3, "subprotocol": "ocpp2.1"}])
    header, row = text.splitlines()
    assert header.split()[:3] == ["id", "connection", "subprotocol"]
    assert row.split() == ["CP1", "3", "ocpp2.1", "-", "-", "-", "-", "-"]


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, registry="allow-all", **values)


def test_the_api_is_off_by_default() -> None:
    assert settings().admin_token is None and settings().admin_port is None


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"admin_token": TOKEN}, "GATEWAY_ADMIN_PORT is not"),
        ({"admin_port": 8090}, "GATEWAY_ADMIN_TOKEN is not"),
        ({"admin_token": "tooshort!", "admin_port": 8090}, "at least 16 characters"),
    ],
)
def test_admin_settings_that_contradict(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as raised:
        settings(**values)
    assert problem in str(raised.value)
    assert TOKEN not in str(raised.value) and "tooshort!" not in str(raised.value)
