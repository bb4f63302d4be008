import pytest

from gateway.http_requests import unparsable_request_reason


def _eof_with_cause(outer: str, inner: str) -> EOFError:
    error = EOFError(outer)
    error.__cause__ = EOFError(inner)
    return error


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (UnicodeDecodeError("ascii", b"\xc3", 0, 1, "ordinal not in range(128)"), "ASCII"),
        (ValueError("unsupported protocol; expected HTTP/1.1 or HTTP/1.0: GET / HTTP/2.0"), "1.1"),
        (ValueError("invalid HTTP request line: GET"), "GET <path> HTTP/1.1"),
        (ValueError("invalid HTTP header line: Host x"), "`Name: value`"),
        (ValueError("invalid HTTP header name: a b"), "header name"),
        (ValueError("invalid HTTP header value: \x01"), "control characters"),
        (ValueError("unsupported request body"), "no request body"),
        (NotImplementedError("transfer codings aren't supported"), "no request body"),
        (
            _eof_with_cause("connection closed while reading HTTP headers", "line without CRLF"),
            "CRLF",
        ),
        (RuntimeError("something websockets says one day"), "not an HTTP/1.1 request"),
        (ValueError("something websockets says one day"), "not an HTTP/1.1 request"),
    ],
)
def test_each_parse_failure_gets_its_reason(error: BaseException, words: str) -> None:
    reason = unparsable_request_reason(error)
    assert reason is not None
    assert words in reason


def test_a_client_that_left_gets_no_answer() -> None:
    left = _eof_with_cause(
        "connection closed while reading HTTP request line", "stream ends after 3 bytes"
    )
    assert unparsable_request_reason(left) is None
