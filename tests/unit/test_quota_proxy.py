"""The packet reading of the test broker that caps subscriptions (tests/support/quota_proxy.py)."""

from __future__ import annotations

import pytest

from tests.support.quota_proxy import (
    Connect,
    MalformedPacket,
    PacketReader,
    decode_varint,
    encode_varint,
    parse_connect,
    parse_subscribe,
    parse_unsubscribe,
    suback,
)

# MQTT 5 CONNECT, clean start, keep-alive 60, no properties, client id "ab".
CONNECT_CLEAN = bytes.fromhex("10 0f 0004 4d515454 05 02 003c 00 0002 6162")
# The same with clean start off, a will flag, and a session expiry property (0x11, 4 bytes).
CONNECT_RESUME = bytes.fromhex("10 14 0004 4d515454 05 04 003c 05 11 0000000a 0002 6162")
# SUBSCRIBE id 7, no properties, "a/out" (QoS 1) and "c/x" (QoS 1, no local).
SUBSCRIBE = bytes.fromhex("82 11 0007 00 0005 612f6f7574 01 0003 632f78 05")
# SUBSCRIBE id 8 with a subscription identifier property (0x0b, varint 3).
SUBSCRIBE_PROPS = bytes.fromhex("82 09 0008 02 0b03 0001 61 01")
# UNSUBSCRIBE id 9, no properties, "a/out" and "c/x".
UNSUBSCRIBE = bytes.fromhex("a2 0f 0009 00 0005 612f6f7574 0003 632f78")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"),
     (268_435_455, "ffffff7f")],
)  # fmt: skip
def test_variable_byte_integers_both_ways(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex("ff" + encoded), 1) == (value, 1 + len(encoded) // 2)


def test_a_truncated_varint_asks_for_more_and_a_fifth_byte_is_malformed() -> None:
    assert decode_varint(b"\x80\x80", 0) is None
    with pytest.raises(MalformedPacket):
        decode_varint(b"\x80\x80\x80\x80\x01", 0)


def test_the_reader_returns_whole_packets_whatever_the_chunks() -> None:
    stream = CONNECT_CLEAN + SUBSCRIBE + b"\xc0\x00" + UNSUBSCRIBE  # PINGREQ in between
    for size in (1, 2, 3, 7, len(stream)):
        reader = PacketReader()
        packets = []
        for start in range(0, len(stream), size):
            packets.extend(reader.feed(stream[start : start + size]))
        assert packets == [CONNECT_CLEAN, SUBSCRIBE, b"\xc0\x00", UNSUBSCRIBE]


def test_a_packet_longer_than_127_bytes_is_read_whole() -> None:
    body = b"\x00\x01" + b"x" * 200
    packet = b"\x30" + encode_varint(len(body)) + body  # PUBLISH
    reader = PacketReader()
    assert reader.feed(packet[:100]) == []
    assert reader.feed(packet[100:] + b"\xc0") == [packet]
    assert reader.feed(b"\x00") == [b"\xc0\x00"]


def test_connect_gives_the_client_id_and_clean_start() -> None:
    assert parse_connect(CONNECT_CLEAN) == Connect("ab", clean_start=True)
    assert parse_connect(CONNECT_RESUME) == Connect("ab", clean_start=False)


def test_subscribe_and_unsubscribe_give_their_topic_filters() -> None:
    assert parse_subscribe(SUBSCRIBE) == (7, ["a/out", "c/x"])
    assert parse_subscribe(SUBSCRIBE_PROPS) == (8, ["a"])
    assert parse_unsubscribe(UNSUBSCRIBE) == (9, ["a/out", "c/x"])


def test_a_packet_shorter_than_its_fields_is_malformed() -> None:
    with pytest.raises(MalformedPacket):
        parse_subscribe(bytes.fromhex("82 06 0007 00 0005 61"))


def test_the_refusal_is_a_suback_with_one_reason_code_per_filter() -> None:
    assert suback(7, [0x97, 0x97]) == bytes.fromhex("90 05 0007 00 97 97")
