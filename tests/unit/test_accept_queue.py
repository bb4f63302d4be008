"""Reading the accept queue's length from TCP_INFO, without a socket."""

from __future__ import annotations

import struct

from gateway.accept_queue import queued_in_tcp_info, waiting_to_be_accepted


def tcp_info(unacked: int, sacked: int = 4096) -> bytes:
    # 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked, ...
    return bytes(8) + struct.pack("=6I", 200_000, 0, 536, 536, unacked, sacked) + bytes(72)


class FakeListeningSocket:
    def __init__(self, info: bytes | OSError) -> None:
        self.info = info

    def getsockopt(self, level: int, option: int, buffersize: int) -> bytes:
        if isinstance(self.info, OSError):
            raise self.info
        return self.info[:buffersize]


def test_the_queue_length_is_tcpi_unacked() -> None:
    assert queued_in_tcp_info(tcp_info(unacked=17)) == 17


def test_a_tcp_info_too_short_to_hold_it_counts_as_empty() -> None:
    assert queued_in_tcp_info(tcp_info(unacked=17)[:27]) == 0


def test_the_queues_of_all_sockets_are_added_and_failing_ones_skipped() -> None:
    sockets = [
        FakeListeningSocket(tcp_info(unacked=2)),
        FakeListeningSocket(OSError("not a TCP socket")),
        FakeListeningSocket(tcp_info(unacked=5)),
    ]
    assert waiting_to_be_accepted(sockets) == 7
