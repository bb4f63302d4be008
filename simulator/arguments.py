"""Command-line pieces shared by the single charge point and the fleet."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from simulator.backoff import RetryBackOff
from simulator.dial import SUBPROTOCOLS, DialSettingsError, TlsFiles, client_ssl_context

PASSWORD_VARIABLE = "SIMULATOR_PASSWORD"


def number_type(
    kind: Callable[[str], float], minimum: float, inclusive: bool = True
) -> Callable[[str], float]:
    """An argparse type: a number no smaller than `minimum` (or larger, when not inclusive)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value != value or value < minimum or (not inclusive and value == minimum):
            relation = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, not {text}")
        return value

    return parse


positive_number = number_type(float, 0.0, inclusive=False)
non_negative_number = number_type(float, 0.0)
non_negative_int = number_type(int, 0)
positive_int = number_type(int, 1)


def add_connection_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--url",
        default="ws://localhost:8080",
        help="the gateway's WebSocket URL; the charge point id is appended (default: %(default)s)",
    )
    group.add_argument(
        "--ocpp",
        choices=sorted(SUBPROTOCOLS),
        default="2.0.1",
        help="OCPP version (default: %(default)s)",
    )
    group.add_argument(
        "--open-timeout",
        type=positive_number,
        default=10.0,
        help="seconds allowed for the WebSocket handshake (default: %(default)s)",
    )
    group.add_argument(
        "--call-timeout",
        type=positive_number,
        default=30.0,
        help="seconds to wait for the answer to a call (default: %(default)s)",
    )


def add_security_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_VARIABLE),
        help="HTTP Basic password, user = charge point id (OCPP security profiles 1 and 2); "
        f"also read from ${PASSWORD_VARIABLE}",
    )
    group.add_argument("--ca-file", help="CA bundle to verify a wss:// gateway")
    group.add_argument("--client-cert", help="client certificate, PEM (security profile 3)")
    group.add_argument("--client-key", help="key of --client-cert, PEM, if not in that file")


def tls_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsFiles:
    """The TLS files, checked against the URL now rather than at the first dial."""
    files = TlsFiles(args.ca_file, args.client_cert, args.client_key)
    try:
        client_ssl_context(args.url, files)
    except DialSettingsError as exc:
        parser.error(str(exc))
    return files


def add_reconnect_arguments(group: argparse._ArgumentGroup) -> None:
    defaults = RetryBackOff()
    group.add_argument(
        "--reconnect",
        action="store_true",
        help="re-dial with the OCPP back-off after a refusal or a drop, instead of giving up",
    )
    group.add_argument(
        "--retry-wait-minimum",
        type=non_negative_number,
        default=defaults.wait_minimum,
        help="RetryBackOffWaitMinimum, seconds (default: %(default)s)",
    )
    group.add_argument(
        "--retry-random-range",
        type=non_negative_number,
        default=defaults.random_range,
        help="RetryBackOffRandomRange, seconds (default: %(default)s)",
    )
    group.add_argument(
        "--retry-repeat-times",
        type=non_negative_int,
        default=defaults.repeat_times,
        help="RetryBackOffRepeatTimes: how often the wait doubles (default: %(default)s)",
    )


def reconnect_backoff(args: argparse.Namespace) -> RetryBackOff | None:
    if not args.reconnect:
        return None
    return RetryBackOff(
        args.retry_wait_minimum, args.retry_random_range, int(args.retry_repeat_times)
    )
