"""`ocpp-gateway-admin`: the connected-CP API from a terminal.

ocpp-gateway-admin --url http://127.0.0.1:8090 list
ocpp-gateway-admin show CP1
ocpp-gateway-admin disconnect CP1 --code 4000 --reason "firmware update"

The token comes from GATEWAY_ADMIN_TOKEN, never from the command line (where `ps` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_URL = "http://127.0.0.1:8090"
TOKEN_VARIABLE = "GATEWAY_ADMIN_TOKEN"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COLUMNS = ("id", "connection", "subprotocol", "remote", "connected_since", "frames_in",
           "frames_out", "last_frame_at")  # fmt: skip


class ApiError(Exception):
    """The API answered with an error, or could not be reached."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocpp-gateway-admin",
        description="List the charge points connected to one gateway replica, or close one. "
        f"The bearer token is read from {TOKEN_VARIABLE}.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("GATEWAY_ADMIN_URL", DEFAULT_URL),
        help="the replica's admin API (GATEWAY_ADMIN_HOST:GATEWAY_ADMIN_PORT; "
        "default: $GATEWAY_ADMIN_URL or %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every connected charge point, ordered by id")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--page-size", type=int, default=1000, help="entries per request")
    show = commands.add_parser("show", help="one charge point, as JSON")
    show.add_argument("cp_id", metavar="ID")
    disconnect = commands.add_parser("disconnect", help="close a charge point's WebSocket")
    disconnect.add_argument("cp_id", metavar="ID")
    disconnect.add_argument(
        "--code", type=int, default=1000, help="1000, 1001, 1008, 1011, 1012 or 3000-4999"
    )
    disconnect.add_argument(
        "--reason", default="closed by operator", help="at most 123 bytes (default: %(default)s)"
    )
    return parser


class Client:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise ApiError(f"HTTP {exc.code}: {_error_text(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                f"cannot reach {self._url}: {reason} (is GATEWAY_ADMIN_PORT set on the gateway?)"
            ) from None

    def every_cp(self, page_size: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query = {"limit": str(page_size), **({"after": after} if after is not None else {})}
            page = self.call("GET", "/cps?" + urlencode(query))
            entries.extend(page["cps"])
            after = page.get("next")
            if after is None:
                return entries


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()


def table(entries: Sequence[dict[str, Any]]) -> str:
    rows = [list(COLUMNS)] + [
        ["-" if entry.get(column) is None else str(entry[column]) for column in COLUMNS]
        for entry in entries
    ]
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        print(f"ocpp-gateway-admin: set {TOKEN_VARIABLE} to the gateway's token", file=sys.stderr)
        return EXIT_USAGE
    client = Client(args.url, token, args.timeout)
    try:
        if args.command == "list":
            entries = client.every_cp(args.page_size)
            if args.json:
                for entry in entries:
                    print(json.dumps(entry))
            else:
                print(table(entries))
                print(f"{len(entries)} connected")
        elif args.command == "show":
            print(json.dumps(client.call("GET", f"/cps/{quote(args.cp_id, safe='')}"), indent=2))
        else:
            answer = client.call(
                "DELETE",
                f"/cps/{quote(args.cp_id, safe='')}",
                {"code": args.code, "reason": args.reason},
            )
            print(f"closed {answer['closed']} (connection {answer['connection']}) "
                  f"with {answer['code']} {answer['reason']!r}")  # fmt: skip
    except ApiError as exc:
        print(f"ocpp-gateway-admin: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
