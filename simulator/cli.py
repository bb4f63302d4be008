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
from collections.abc import Sequence

from simulator.arguments import (
    PASSWORD_VARIABLE,
    add_connection_arguments,
    add_reconnect_arguments,
    add_security_arguments,
    non_negative_int,
    non_negative_number,
    positive_number,
    reconnect_backoff,
    tls_files,
)
from simulator.config import ChargingSession, StationConfig
from simulator.dial import DialSettingsError, station_url
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
EXIT_INTERRUPTED = 130


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Simulate an EV charge point: BootNotification, then Heartbeats at the interval the "
            "central system returns; optionally a charging session (--scenario). "
            "Run `%(prog)s fleet --help` to simulate thousands of charge points for load."
        ),
        epilog=(
            "Exit status: 0 when stopped (Ctrl-C, SIGTERM) or done (--heartbeats), 1 when the "
            "connection is refused or lost (without --reconnect), 2 for bad arguments."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    where = parser.add_argument_group("connection")
    where.add_argument("--cp-id", required=True, help="charge point id, e.g. CP1")
    add_connection_arguments(where)
    where.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    add_security_arguments(parser.add_argument_group("security (OCPP profiles 1-3)"))

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
        type=positive_number,
        help="seconds between Heartbeats, overriding the interval the central system returns",
    )
    what.add_argument(
        "--heartbeats",
        type=non_negative_int,
        metavar="N",
        help="exit after N Heartbeats (and the --scenario); default: run until Ctrl-C",
    )
    what.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: %(default)s",
    )

    session = parser.add_argument_group("charging session (--scenario, or started by the CSMS)")
    session.add_argument(
        "--scenario",
        action="store_true",
        help="after boot: Available, Occupied, Authorize, a transaction with meter values, "
        "Available again (OCPP 1.6: Preparing, Authorize, StartTransaction, MeterValues, "
        "StopTransaction)",
    )
    session.add_argument(
        "--power-kw", type=non_negative_number, default=11.0, help="charging power (default: 11)"
    )
    session.add_argument(
        "--meter-interval",
        type=positive_number,
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
    add_reconnect_arguments(parser.add_argument_group("reconnecting (OCPP RetryBackOff*)"))
    return parser


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> StationConfig:
    """The charge point the arguments describe; argument errors end with exit status 2."""
    try:
        station_url(args.url, args.cp_id)
    except DialSettingsError as exc:
        parser.error(str(exc))
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
        tls=tls_files(parser, args),
        heartbeat_interval=args.heartbeat_interval,
        heartbeats=None if args.heartbeats is None else int(args.heartbeats),
        scenario=args.scenario,
        session=ChargingSession(
            power_kw=args.power_kw,
            meter_interval=args.meter_interval,
            meter_samples=int(args.meter_samples),
            id_token=args.id_token,
        ),
        reconnect=reconnect_backoff(args),
        call_timeout=args.call_timeout,
        open_timeout=args.open_timeout,
        compression=not args.no_compression,
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0]) or "simulate.py"
    if arguments[:1] == ["fleet"]:
        from simulator.fleet.cli import main as fleet_main

        return fleet_main(arguments[1:], prog=f"{prog} fleet")
    parser = build_parser(prog)
    args = parser.parse_args(arguments)
    config = config_from_args(parser, args)
    # The documented output: `INFO:ocpp:CP1: send [...]`, `INFO:root:CP1: connected ...`.
    logging.basicConfig(level=args.log_level)
    from simulator.station import simulate

    try:
        return asyncio.run(simulate(config))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


__all__ = ["PASSWORD_VARIABLE", "build_parser", "config_from_args", "main"]
