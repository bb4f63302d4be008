from gateway.links.broker import PROCESS_NONCE
from gateway.links.claims import Claim, decode_claim, next_connection_id


def test_newest_claim_wins_with_deterministic_ties() -> None:
    older = Claim(100.0, "gw-b", "c2")
    newer = Claim(100.5, "gw-a", "c1")
    assert newer > older
    same_time_a = Claim(100.0, "gw-a", "z")
    same_time_b = Claim(100.0, "gw-b", "a")
    assert same_time_b > same_time_a  # then by gateway id
    assert Claim(1.0, "gw", "b") > Claim(1.0, "gw", "a")  # then by connection id


def test_claims_round_trip_and_garbage_is_ignored() -> None:
    claim = Claim(1732212345.25, "gw-1", "abc")
    assert decode_claim(claim.encode()) == claim
    for garbage in [
        b"",
        b"not json",
        b"[]",
        b'{"at": "x", "gateway": "g", "connection": "c"}',
        b'{"gateway": "g"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"at": NaN, "gateway": "g", "connection": "c"}',
    ]:
        assert decode_claim(garbage) is None


def test_connection_ids_are_unique_and_name_the_process() -> None:
    first, second = next_connection_id(), next_connection_id()
    assert first != second
    assert first.split(".")[0] == second.split(".")[0] == PROCESS_NONCE
