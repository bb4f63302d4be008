"""An HTTP endpoint in front of an AWS emulator that throttles requests when told to.

AWS answers a throttled call with HTTP 400 and an error code (`ThrottlingException` for IoT,
`ProvisionedThroughputExceededException` for DynamoDB); this proxy does the same for the next
`throttle(n)` requests and forwards every other request unchanged, so boto3's real retry and
client-side rate limiting run against a real socket.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Hop-by-hop headers are the proxy's own business, not the upstream's.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class ThrottlingProxy:
    def __init__(self, upstream_url: str, error_code: str = "ThrottlingException") -> None:
        upstream = urlsplit(upstream_url)
        assert upstream.hostname is not None and upstream.port is not None
        self.error_code = error_code
        self.throttled = 0
        self.forwarded = 0
        self._to_throttle = 0
        self._only_path: str | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), self._handler(upstream.hostname, upstream.port)
        )
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def throttle(self, requests: int, only_path: str | None = None) -> None:
        """Answer the next `requests` requests with a throttling error; with `only_path`, only
        requests for that path (e.g. `/things`: ListThings, not DescribeThing)."""
        with self._lock:
            self._to_throttle = requests
            self._only_path = only_path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_throttle(self, path: str) -> bool:
        with self._lock:
            other_path = self._only_path is not None and path.partition("?")[0] != self._only_path
            if self._to_throttle == 0 or other_path:
                self.forwarded += 1
                return False
            self._to_throttle -= 1
            self.throttled += 1
            return True

    def _handler(self, upstream_host: str, upstream_port: int) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def do_PATCH(self) -> None:
                self._answer()

            def do_PUT(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy._take_throttle(self.path):
                    self._throttled()
                    return
                upstream = http.client.HTTPConnection(upstream_host, upstream_port, timeout=10)
                try:
                    headers = {
                        name: value
                        for name, value in self.headers.items()
                        if name.lower() not in _NOT_FORWARDED
                    }
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    content = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in _NOT_FORWARDED:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                finally:
                    upstream.close()

            def _throttled(self) -> None:
                content = json.dumps(
                    {"__type": proxy.error_code, "message": "Rate exceeded"}
                ).encode()
                self.send_response(400)
                self.send_header("x-amzn-ErrorType", proxy.error_code)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        return Handler
