import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.observability import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def fail() -> None:
    raise ZeroDivisionError("division by zero")


def test_json_logs_show_a_librarys_traceback_as_text(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    try:
        fail()
    except ZeroDivisionError:
        logging.getLogger("websockets.server").error("connection handler failed", exc_info=True)
        structlog.get_logger("gateway.test").exception("own.failure")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["connection handler failed", "own.failure"]
    for line in lines:
        assert "exc_info" not in line
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert "in fail" in line["exception"]
        assert line["exception"].endswith("ZeroDivisionError: division by zero")
    assert lines[0]["logger"] == "websockets.server"


def test_console_logs_show_a_librarys_traceback_too(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "console")
    try:
        fail()
    except ZeroDivisionError:
        logging.getLogger("websockets.server").error("connection handler failed", exc_info=True)
    err = capsys.readouterr().err
    assert "connection handler failed" in err
    assert "ZeroDivisionError: division by zero" in err
    assert "traceback object" not in err
