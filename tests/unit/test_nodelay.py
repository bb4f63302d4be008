"""Nagle is turned off on this process's sockets towards one port, each looked at once."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.links.nodelay import NagleSwitch


def nodelay(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@contextmanager
def two_servers() -> Iterator[tuple[int, int]]:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_server(("127.0.0.1", 0)) as other_server,
    ):
        yield server.getsockname()[1], other_server.getsockname()[1]


def test_nagle_is_turned_off_only_towards_the_given_port() -> None:
    with two_servers() as (port, other_port):
        towards = socket.create_connection(("127.0.0.1", port))
        elsewhere = socket.create_connection(("127.0.0.1", other_port))
        with towards, elsewhere:
            assert NagleSwitch(port).turn_off() == 1
            assert nodelay(towards)
            assert not nodelay(elsewhere)


def test_each_socket_is_looked_at_once_and_new_ones_in_the_next_pass() -> None:
    with two_servers() as (port, _):
        switch = NagleSwitch(port)
        with socket.create_connection(("127.0.0.1", port)):
            assert switch.turn_off() == 1
            assert switch.turn_off() == 0  # nothing new
            with socket.create_connection(("127.0.0.1", port)) as newer:
                assert switch.turn_off() == 1
                assert nodelay(newer)


def test_a_socket_still_connecting_is_looked_at_again() -> None:
    with two_servers() as (port, _):
        switch = NagleSwitch(port)
        with socket.socket() as sock:  # a TCP socket with no peer yet
            assert switch.turn_off() == 0
            sock.connect(("127.0.0.1", port))
            assert switch.turn_off() == 1
            assert nodelay(sock)


def test_a_reused_descriptor_is_looked_at_again() -> None:
    with two_servers() as (port, other_port):
        switch = NagleSwitch(port)
        first = socket.create_connection(("127.0.0.1", other_port))
        number = first.fileno()
        assert switch.turn_off() == 0
        first.close()
        with socket.create_connection(("127.0.0.1", port)) as second:
            assert second.fileno() == number  # the lowest free descriptor
            assert switch.turn_off() == 1
            assert nodelay(second)
