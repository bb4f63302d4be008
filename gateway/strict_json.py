"""JSON from untrusted peers, read as RFC 8259 says and without crashing the reader.

Python's `json` module accepts `NaN`, `Infinity` and `-Infinity`, which are not JSON: a frame
carrying them would be forwarded and then refused by a stricter CSMS. It also raises
`RecursionError`, not `ValueError`, for arrays or objects nested deeper than the interpreter's
recursion limit (about a thousand levels, ten kilobytes of `[`), which escapes handlers that
expect a parse error. `decode` turns both into `JsonRefused`, a `ValueError`, so one `except
ValueError` covers everything a peer can send.
"""

from __future__ import annotations

import json
from typing import Any


class JsonRefused(ValueError):
    """Text that parses, but as something that is not JSON; the message says what."""


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number (RFC 8259)")


# One decoder for every call: `json.loads` with keyword arguments builds a new one each time.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def decode(text: str) -> Any:
    """The value of the JSON text `text`.

    Raises `JsonRefused` for non-numbers and for nesting too deep to read, and
    `json.JSONDecodeError` (also a `ValueError`) for text that is not JSON at all.
    """
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise JsonRefused("arrays or objects are nested too deeply to read") from None


def decode_bytes(payload: bytes) -> Any:
    """`decode` for a message payload; `UnicodeDecodeError` (a `ValueError`) if not UTF-8."""
    return decode(payload.decode())
