"""`simulate.py fleet ...` / `python -m simulator.fleet ...`: run a fleet, print its summary."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from simulator.fleet.limits import over_limit_message, raise_open_files_limit
from simulator.fleet.options import FleetPlan, build_parser, plan_from_args
from simulator.fleet.runner import install_stop_signals, run_fleet
from simulator.fleet.stats import Summary

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

log = structlog.get_logger(__name__)


def configure_logging() -> None:
    """Key-value lines on stderr: stdout is kept for the summary (`--json` parses cleanly)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def run(plan: FleetPlan) -> Summary:
    stop = asyncio.Event()
    install_stop_signals(stop)
    return await run_fleet(plan, progress=sys.stderr, stop=stop)


def run_with_loop(job: Coroutine[Any, Any, Summary], use_uvloop: bool) -> Summary:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("fleet.uvloop_missing", hint="pip install uvloop for a faster event loop")
        else:
            return uvloop.run(job)
    return asyncio.run(job)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    limit = raise_open_files_limit()
    problem = over_limit_message(int(args.count), limit)
    if problem is not None:
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    plan = plan_from_args(parser, args)
    configure_logging()
    # Thousands of live connections make Python's full cycle collections the fleet's biggest
    # cost while it connects; collect young objects less often (reference counting frees most).
    gc.set_threshold(50_000, 20, 10)
    gc.freeze()
    summary = run_with_loop(run(plan), use_uvloop=not args.no_uvloop)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(summary.text())
    return EXIT_PASSED if summary.passed else EXIT_FAILED
