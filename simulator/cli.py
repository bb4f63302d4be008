"""Command line of the simulator: one charge point, or `fleet ...` for many.

    simulate.py --url ws://localhost:8080 --cp-id CP1
    simulate.py fleet --url ws://localhost:8080 --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from simulator.backoff import RetryBackOff
from simulator.config import Scenario, StationConfig
from simulator.dial import SUBPROTOCOLS, DialSettingsError, TlsFiles, client_ssl_context
from simulator.dial import station_url
from simulator.identity import (
    DEFAULT_FIRMWARE,
    DEFAULT_ICCID,
    DEFAULT_IMSI,
    DEFAULT_MODEL,
    DEFAULT_SERIAL,
    DEFAULT_VENDOR,
    StationIdentity,
    for_version,
    identity_problems,
)

VERSION = "1.1.0"
PASSWORD_VARIABLE = "SIMULATOR_PASSWORD"
EXIT_INTERRUPTED = 130


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
        if value < minimum or (not inclusive and value == minimum):
            relation = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, not {text}")
        return value

    return parse


positive_seconds = number_type(float, 0.0, inclusive=False)
non_negative_seconds = number_type(float, 0.0)
non_negative_int = number_type(int, 0)
positive_int = number_type(int, 1)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Simulate an EV charge point: BootNotification, then Heartbeats at the interval the "
            "central system returns; optionally a charging session (--scenario). "
            "Run `%(prog)s fleet --help` to simulate thousands of charge points for load."
        ),
        epilog=(
            f"The password may also come from the environment variable {PASSWORD_VARIABLE}. "
            "Exit status: 0 when stopped (Ctrl-C, SIGTERM) or done, 1 when the connection is "
            "refused or lost (without --reconnect), 2 for bad arguments."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    where = parser.add_argument_group("connection")
    where.add_argument(
        "--url",
        default="ws://localhost:8080",
        help="the gateway's WebSocket URL; the charge point id is appended (default: %(default)s)",
    )
    where.add_argument("--cp-id", required=True, help="charge point id, e.g. CP1")
    where.add_argument(
        "--ocpp",
        choices=sorted(SUBPROTOCOLS),
        default="2.0.1",
        help="OCPP version (default: %(default)s)",
    )
    where.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_VARIABLE),
        help="HTTP Basic password, user = charge point id (OCPP security profiles 1 and 2)",
    )
    where.add_argument("--ca-file", help="CA bundle to verify a wss:// gateway")
    where.add_argument("--client-cert", help="client certificate, PEM (security profile 3)")
    where.add_argument("--client-key", help="key of --client-cert, PEM, if not in that file")
    where.add_argument(
        "--open-timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds allowed for the WebSocket handshake (default: %(default)s)",
    )
    where.add_argument(
        "--no-compression",
        action="store_true",
        help="do not offer permessage-deflate",
    )

    who = parser.add_argument_group("identity (BootNotification)")
    who.add_argument("--cp-serial", default=DEFAULT_SERIAL, help="serial number")
    who.add_argument("--cp-model", default=DEFAULT_MODEL, help="model")
    who.add_argument("--cp-version", default=DEFAULT_FIRMWARE, help="firmware version")
    who.add_argument("--cp-vendor", default=DEFAULT_VENDOR, help="vendor name")
    who.add_argument("--cp-iccid", default=DEFAULT_ICCID, help="modem ICCID")
    who.add_argument("--cp-imsi", default=DEFAULT_IMSI, help="modem IMSI")

    what = parser.add_argument_group("behaviour")
    what.add_argument(
        "--heartbeat-interval",
        type=positive_seconds,
        help="seconds between Heartbeats, overriding the interval the central system returns",
    )
    what.add_argument(
        "--heartbeats",
        type=non_negative_int,
        metavar="N",
        help="exit after N Heartbeats (and the --scenario); default: run until Ctrl-C",
    )
    what.add_argument(
        "--call-timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds to wait for the answer to a call (default: %(default)s)",
    )
    what.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: %(default)s",
    )

    session = parser.add_argument_group("charging session")
    session.add_argument(
        "--scenario",
        action="store_true",
        help="after boot: Available, Occupied, Authorize, transaction with meter values, "
        "Available again (OCPP 1.6: Preparing, StartTransaction, MeterValues, StopTransaction)",
    )
    session.add_argument(
        "--power-kw", type=non_negative_seconds, default=11.0, help="charging power (default: 11)"
    )
    session.add_argument(
        "--meter-interval",
        type=positive_seconds,
        default=10.0,
        help="seconds between meter values (default: %(default)s)",
    )
    session.add_argument(
        "--meter-samples",
        type=non_negative_int,
        default=6,
        help="meter values before the session stops (default: %(default)s)",
    )
    session.add_argument(
        "--id-token", default="04A1B2C3D4E5F6", help="RFID token presented (default: %(default)s)"
    )

    again = parser.add_argument_group("reconnecting (OCPP RetryBackOff*)")
    again.add_argument(
        "--reconnect",
        action="store_true",
        help="re-dial with the OCPP back-off after a refusal or a drop, instead of exiting",
    )
    again.add_argument(
        "--retry-wait-minimum",
        type=non_negative_seconds,
        default=RetryBackOff.wait_minimum,
        help="RetryBackOffWaitMinimum, seconds (default: %(default)s)",
    )
    again.add_argument(
        "--retry-random-range",
        type=non_negative_seconds,
        default=RetryBackOff.random_range,
        help="RetryBackOffRandomRange, seconds (default: %(default)s)",
    )
    again.add_argument(
        "--retry-repeat-times",
        type=non_negative_int,
        default=RetryBackOff.repeat_times,
        help="RetryBackOffRepeatTimes: how often the wait doubles (default: %(default)s)",
    )
    return parser


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> StationConfig:
    """The charge point the arguments describe; argument errors end with exit status 2."""
    tls = TlsFiles(args.ca_file, args.client_cert, args.client_key)
    try:
        station_url(args.url, args.cp_id)
        client_ssl_context(args.url, tls)
    except DialSettingsError as exc:
        parser.error(str(exc))
    reconnect = None
    if args.reconnect:
        reconnect = RetryBackOff(
            args.retry_wait_minimum, args.retry_random_range, int(args.retry_repeat_times)
        )
    scenario = None
    if args.scenario:
        scenario = Scenario(
            power_kw=args.power_kw,
            meter_interval=args.meter_interval,
            meter_samples=int(args.meter_samples),
            id_token=args.id_token,
        )
    identity = for_version(
        StationIdentity(
            model=args.cp_model,
            vendor=args.cp_vendor,
            firmware=args.cp_version,
            serial=args.cp_serial,
            iccid=args.cp_iccid,
            imsi=args.cp_imsi,
        ),
        args.ocpp,
    )
    problems = identity_problems(identity, args.ocpp)
    if problems:
        parser.error("; ".join(problems))
    return StationConfig(
        cp_id=args.cp_id,
        url=args.url,
        ocpp_version=args.ocpp,
        identity=identity,
        password=args.password,
        tls=tls,
        heartbeat_interval=args.heartbeat_interval,
        heartbeats=None if args.heartbeats is None else int(args.heartbeats),
        scenario=scenario,
        reconnect=reconnect,
        call_timeout=args.call_timeout,
        open_timeout=args.open_timeout,
        compression=not args.no_compression,
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["fleet"]:
        from simulator.fleet.cli import main as fleet_main

        return fleet_main(arguments[1:], prog=f"{prog or parser_prog()} fleet")
    parser = build_parser(prog)
    args = parser.parse_args(arguments)
    config = config_from_args(parser, args)
    # The documented output format: `INFO:ocpp:CP1: send [...]`, `INFO:root:CP1: ...`.
    logging.basicConfig(level=args.log_level)
    from simulator.station import simulate

    try:
        return asyncio.run(simulate(config))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def parser_prog() -> str:
    return os.path.basename(sys.argv[0]) or "simulate.py"
