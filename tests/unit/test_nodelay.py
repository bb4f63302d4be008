import socket

from gateway.links.nodelay import disable_nagle_towards


def test_nagle_is_turned_off_only_towards_the_given_port() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_server(("127.0.0.1", 0)) as other_server,
    ):
        port = server.getsockname()[1]
        towards = socket.create_connection(("127.0.0.1", port))
        elsewhere = socket.create_connection(("127.0.0.1", other_server.getsockname()[1]))
        try:
            assert disable_nagle_towards(port) == 1
            assert towards.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert elsewhere.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        finally:
            towards.close()
            elsewhere.close()
