from http import HTTPStatus

import pytest

from gateway.handshake import HandshakeRefused, cp_id_from_path, select_subprotocol


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        ("/CP1", "", "CP1"),
        ("/CP1?x=1", "", "CP1"),
        ("/ocpp/CP1", "/ocpp", "CP1"),
        ("/CP%2D1", "", "CP-1"),
        ("/" + "A" * 48, "", "A" * 48),
        ("/a*b-c_d=e|f@g.h", "", "a*b-c_d=e|f@g.h"),
        ("/.CP1", "", ".CP1"),
        ("/a..b", "", "a..b"),
    ],
)
def test_valid_ids_are_extracted(path: str, prefix: str, expected: str) -> None:
    assert cp_id_from_path(path, prefix) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",  # empty
        "/CP+1",
        "/CP%2B1",  # + percent-encoded
        "/CP%231",  # '#'
        "/CP%2F1",  # '/' percent-encoded
        "/CP%201",  # space
        "/CP:1",
        "/" + "A" * 49,
        "/CP1/extra",
        "/CP1/",
        "/%FF",  # not UTF-8
        "/CPÄ",
        "/.",
        "/..",
        "/...",
        "/%2e%2e",
        "/%2E",
        "/.%2e",
    ],
)
def test_invalid_ids_are_refused_with_400(path: str) -> None:
    with pytest.raises(HandshakeRefused) as refused:
        cp_id_from_path(path)
    assert refused.value.status is HTTPStatus.BAD_REQUEST
    assert refused.value.reason


def test_path_outside_the_prefix_is_not_found() -> None:
    with pytest.raises(HandshakeRefused) as refused:
        cp_id_from_path("/CP1", "/ocpp")
    assert refused.value.status is HTTPStatus.NOT_FOUND
    assert "/ocpp/" in refused.value.reason


SUPPORTED = ["ocpp2.0.1", "ocpp2.0", "ocpp1.6"]


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),  # the client's order wins
        (["ocpp9", "ocpp2.0"], "ocpp2.0"),
        (["ocpp9"], None),
        ([], None),
    ],
)
def test_subprotocol_follows_the_clients_order(offered: list[str], expected: str | None) -> None:
    assert select_subprotocol(offered, SUPPORTED) == expected


@pytest.mark.parametrize("path", ["/..", "/%2e%2e", "/."])
def test_dots_only_ids_are_refused_in_words(path: str) -> None:
    with pytest.raises(HandshakeRefused, match="only of dots"):
        cp_id_from_path(path)
