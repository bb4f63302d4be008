"""How many connections wait in a listening socket's accept queue (Linux), for `/metrics`.

In a reconnect storm the kernel holds the connections the event loop has not accepted yet. For a
listening socket, Linux reports the queue's length as `tcpi_unacked` in TCP_INFO (and its size
as `tcpi_sacked`). The storm threshold does not count them: every accepted handshake would then
meet thousands still queued and be refused (measured: 20,000 CPs took 109.5 s, not 38.8 s).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Protocol

# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, ...
_UNACKED = struct.Struct("=I")
_UNACKED_OFFSET = 24
_TCP_INFO_SIZE = 104


class ListeningSocket(Protocol):
    def getsockopt(self, level: int, option: int, buffersize: int) -> bytes: ...


def queued_in_tcp_info(info: bytes) -> int:
    """The accept queue's length in the TCP_INFO of a listening socket; 0 if too short."""
    if len(info) < _UNACKED_OFFSET + _UNACKED.size:
        return 0
    return int(_UNACKED.unpack_from(info, _UNACKED_OFFSET)[0])


def waiting_to_be_accepted(sockets: Iterable[ListeningSocket]) -> int:
    """Connections waiting in the accept queues of `sockets`; 0 where the OS does not say."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None:
        return 0
    waiting = 0
    for sock in sockets:
        try:
            waiting += queued_in_tcp_info(
                sock.getsockopt(socket.IPPROTO_TCP, tcp_info, _TCP_INFO_SIZE)
            )
        except OSError:
            continue
    return waiting
