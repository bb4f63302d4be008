import json

import pytest

from gateway.strict_json import JsonRefused, decode, decode_bytes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            '[2,"1","X",{"a":1.5e3,"b":-0.0,"c":null}]',
            [2, "1", "X", {"a": 1500.0, "b": -0.0, "c": None}],
        ),
        ('"\\ud83d\\ude97"', "\U0001f697"),
        ("[" * 100 + "]" * 100, json.loads("[" * 100 + "]" * 100)),
    ],
)
def test_json_reads_as_usual(text: str, value: object) -> None:
    assert decode(text) == value


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("NaN", "NaN is not a JSON number"),
        ('{"v":Infinity}', "Infinity is not a JSON number"),
        ("[1,-Infinity]", "-Infinity is not a JSON number"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested too deeply"),
    ],
)
def test_what_python_accepts_but_json_does_not_is_refused(text: str, words: str) -> None:
    with pytest.raises(JsonRefused, match=words):
        decode(text)


@pytest.mark.parametrize("payload", [b"[1,", b"\xff\xfe[]", b"[" * 5000, b"nan"])
def test_every_failure_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the point is the one exception type
        decode_bytes(payload)
