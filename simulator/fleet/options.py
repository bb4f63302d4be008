"""Fleet command line and the plan it describes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from simulator.arguments import (
    add_connection_arguments,
    add_reconnect_arguments,
    add_security_arguments,
    non_negative_int,
    non_negative_number,
    positive_int,
    positive_number,
    reconnect_backoff,
    tls_files,
)
from simulator.backoff import RetryBackOff
from simulator.dial import DialSettingsError, TlsFiles, station_url
from simulator.fleet.ids import DEFAULT_PATTERN, IdPatternError, expand_ids, pattern_from_prefix
from simulator.fleet.stats import Thresholds
from simulator.identity import StationIdentity, for_version

MODES = ("heartbeat", "closed", "rate")


@dataclass(frozen=True)
class FleetPlan:
    """Everything a fleet run needs to know; built from the command line or by a test."""

    url: str
    cp_ids: Sequence[str]
    ocpp_version: str = "2.0.1"
    ramp_per_s: float = 200.0
    """New charge points started per second; 0 starts them all at once."""
    concurrency_limit: int = 100
    """WebSocket handshakes in flight at most."""
    duration_s: float | None = None
    """Keep going this long after the last charge point was started; None: until done/stopped."""
    calls_per_cp: int | None = None
    """Calls after the boot, then close; None: no limit."""
    mode: str = "heartbeat"
    rate_per_cp: float | None = None
    heartbeat_interval: float | None = None
    """Overrides the interval from the BootNotification answer (heartbeat mode)."""
    call_timeout: float = 30.0
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    compression: bool = False
    ping_interval: float | None = None
    max_frame_bytes: int = 65536
    reconnect: RetryBackOff | None = None
    password: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    identity: StationIdentity = field(default_factory=StationIdentity)
    progress_every: float = 5.0
    thresholds: Thresholds = field(default_factory=Thresholds)

    def pace(self, boot_interval: float) -> float:
        """Seconds between one charge point's calls (0: as soon as the answer arrives)."""
        if self.mode == "closed":
            return 0.0
        if self.mode == "rate":
            assert self.rate_per_cp is not None
            return 1.0 / self.rate_per_cp
        return self.heartbeat_interval or boot_interval


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Load generator: many OCPP charge points from one process. Each one connects, "
            "sends BootNotification, then Heartbeats (at the CSMS's interval, as fast as "
            "answered with --mode closed, or at --rate per second), and the run ends with a "
            "summary of connects, calls/s and latency percentiles."
        ),
        epilog=(
            "Exit status: 0 when every threshold holds, 1 when one fails (or no charge point "
            "connected), 2 for bad arguments or a --count beyond the open-files limit."
        ),
    )
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument(
        "--count", type=positive_int, default=100, help="charge points (default: %(default)s)"
    )
    naming = fleet.add_mutually_exclusive_group()
    naming.add_argument(
        "--id-pattern",
        default=DEFAULT_PATTERN,
        help="charge point ids, {n} is the number (default: %(default)s)",
    )
    naming.add_argument("--id-prefix", help="shorthand for --id-pattern PREFIX{n:05d}")
    fleet.add_argument(
        "--id-start", type=non_negative_int, default=1, help="first {n} (default: %(default)s)"
    )
    fleet.add_argument(
        "--ramp",
        type=non_negative_number,
        default=200.0,
        help="charge points started per second; 0 = all at once (default: %(default)s)",
    )
    fleet.add_argument(
        "--concurrency-limit",
        type=positive_int,
        default=100,
        help="WebSocket handshakes in flight at most (default: %(default)s)",
    )

    load = parser.add_argument_group("load")
    load.add_argument(
        "--duration",
        type=positive_number,
        help="seconds to keep going once every charge point was started (default: until "
        "--calls are done, or Ctrl-C)",
    )
    load.add_argument(
        "--calls",
        type=non_negative_int,
        help="calls per charge point after its boot, then it disconnects",
    )
    load.add_argument(
        "--mode",
        choices=MODES,
        help="heartbeat: every --heartbeat-interval or the CSMS's interval (default); "
        "closed: the next call as soon as the answer arrives; rate: --rate calls/s per CP",
    )
    load.add_argument("--rate", type=positive_number, help="calls per second per charge point")
    load.add_argument(
        "--heartbeat-interval",
        type=positive_number,
        help="seconds between Heartbeats, overriding the CSMS's interval",
    )

    link = parser.add_argument_group("connection")
    add_connection_arguments(link)
    link.add_argument(
        "--close-timeout",
        type=positive_number,
        default=2.0,
        help="seconds allowed for each closing handshake (default: %(default)s)",
    )
    link.add_argument(
        "--compression",
        choices=["none", "deflate"],
        default="none",
        help="permessage-deflate costs ~100 KiB per connection (default: %(default)s)",
    )
    link.add_argument(
        "--ping-interval",
        type=non_negative_number,
        default=0.0,
        help="WebSocket keep-alive pings every N s; 0 = none (default: %(default)s)",
    )
    link.add_argument(
        "--max-frame-bytes",
        type=positive_int,
        default=65536,
        help="largest frame accepted from the CSMS (default: %(default)s)",
    )
    add_security_arguments(parser.add_argument_group("security (OCPP profiles 1-3)"))
    add_reconnect_arguments(parser.add_argument_group("reconnecting (OCPP RetryBackOff*)"))

    output = parser.add_argument_group("output and pass/fail")
    output.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    output.add_argument(
        "--progress-every",
        type=non_negative_number,
        default=5.0,
        help="seconds between progress lines on stderr; 0 = none (default: %(default)s)",
    )
    output.add_argument("--max-failed-calls", type=non_negative_int, help="fail above this")
    output.add_argument("--max-connect-errors", type=non_negative_int, help="fail above this")
    output.add_argument(
        "--min-connected", type=non_negative_int, help="fail when fewer charge points connected"
    )
    output.add_argument(
        "--no-uvloop", action="store_true", help="use the standard asyncio event loop"
    )
    return parser


def resolve_mode(mode: str | None, rate: float | None) -> str:
    """`--rate` alone means rate mode; rate mode needs `--rate`; other modes refuse it."""
    if mode is None:
        return "rate" if rate is not None else "heartbeat"
    if mode == "rate" and rate is None:
        raise ValueError("--mode rate needs --rate (calls per second per charge point)")
    if mode != "rate" and rate is not None:
        raise ValueError(f"--rate only applies to --mode rate, not --mode {mode}")
    return mode


def plan_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> FleetPlan:
    pattern = pattern_from_prefix(args.id_prefix) if args.id_prefix else args.id_pattern
    try:
        cp_ids = expand_ids(pattern, int(args.count), int(args.id_start))
        station_url(args.url, cp_ids[0])
        mode = resolve_mode(args.mode, args.rate)
    except (IdPatternError, DialSettingsError, ValueError) as exc:
        parser.error(str(exc))
    return FleetPlan(
        url=args.url,
        cp_ids=cp_ids,
        ocpp_version=args.ocpp,
        ramp_per_s=args.ramp,
        concurrency_limit=int(args.concurrency_limit),
        duration_s=args.duration,
        calls_per_cp=None if args.calls is None else int(args.calls),
        mode=mode,
        rate_per_cp=args.rate,
        heartbeat_interval=args.heartbeat_interval,
        call_timeout=args.call_timeout,
        open_timeout=args.open_timeout,
        close_timeout=args.close_timeout,
        compression=args.compression == "deflate",
        ping_interval=args.ping_interval or None,
        max_frame_bytes=int(args.max_frame_bytes),
        reconnect=reconnect_backoff(args),
        password=args.password,
        tls=tls_files(parser, args),
        identity=for_version(StationIdentity(), args.ocpp),
        progress_every=args.progress_every,
        thresholds=Thresholds(
            max_failed_calls=args.max_failed_calls,
            max_connect_errors=args.max_connect_errors,
            min_connected=args.min_connected,
        ),
    )
