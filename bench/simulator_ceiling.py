"""How much load one fleet process can generate: its ceiling, measured against a trivial OCPP
echo server running in a separate process on the same machine (loopback only).

    python bench/simulator_ceiling.py                  # both runs below, about 2 minutes
    python bench/simulator_ceiling.py --only closed    # 1,000 CPs, closed loop, 20 s
    python bench/simulator_ceiling.py --only idle      # 10,000 CPs, heartbeats every 10 s

`closed`: every charge point sends its next Heartbeat as soon as the previous one is answered,
so the pair of processes runs flat out; the figure that matters is calls per CPU-second of the
fleet process (its ceiling on one core, whatever the server costs).
`idle`: the realistic shape at scale, many connections and few calls; it shows the connect
rate, the memory per charge point and the CPU the fleet needs just to hold them.

The echo server and the fleet share the machine's cores, so the figures are a floor for the
fleet alone. Run it on an otherwise idle machine; it prints the load average it started with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.ports import free_port  # noqa: E402

HOST = "127.0.0.1"
MAX_COUNT = 19_000
MAX_SECONDS = 300.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    name: str
    count: int
    mode: str
    seconds: float
    ramp: float
    interval: int
    concurrency: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_echo_server(port: int, interval: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.support.echo_csms"),
            *("--port", str(port), "--host", HOST, "--interval", str(interval)),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening" not in line:
        server.kill()
        raise SystemExit(f"the echo server did not start: {line!r}")
    return server


def stop_echo_server(server: subprocess.Popen[str]) -> dict[str, Any]:
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=60)
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    result: dict[str, Any] = json.loads(last)
    return result


def run_fleet(run: Run, port: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "simulator.fleet",
        "--url",
        f"ws://{HOST}:{port}",
        "--count",
        str(run.count),
        "--mode",
        run.mode,
        "--duration",
        str(run.seconds),
        "--ramp",
        str(run.ramp),
        "--concurrency-limit",
        str(run.concurrency),
        "--progress-every",
        "5",
        "--json",
    ]
    print(f"$ {' '.join(command[1:])}", file=sys.stderr, flush=True)
    finished = subprocess.run(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    if finished.returncode not in (0, 1):
        raise SystemExit(f"the fleet failed with exit status {finished.returncode}")
    summary: dict[str, Any] = json.loads(finished.stdout)
    return summary


def measure(run: Run) -> dict[str, Any]:
    port = free_port()
    server = start_echo_server(port, run.interval)
    server_cpu_before = cpu_seconds(server.pid)
    try:
        summary = run_fleet(run, port)
        server_cpu = cpu_seconds(server.pid) - server_cpu_before
    finally:
        server_stats = stop_echo_server(server)
    calls = summary["calls_ok"] + summary["calls_failed"]
    return {
        "run": run.name,
        "count": run.count,
        "mode": run.mode,
        "hold_s": run.seconds,
        "fleet": summary,
        "echo_server": {**server_stats, "cpu_s": round(server_cpu, 2)},
        "fleet_calls_per_cpu_s": round(calls / summary["cpu_s"]) if summary["cpu_s"] else None,
        "fleet_cpu_share_of_one_core": (
            round(summary["cpu_s"] / summary["elapsed_s"], 2) if summary["elapsed_s"] else None
        ),
        "fleet_kib_per_cp": (
            round(summary["max_rss_mb"] * 1024 / summary["peak_connected"], 1)
            if summary["peak_connected"]
            else None
        ),
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def report(result: dict[str, Any]) -> str:
    fleet = result["fleet"]
    latency = fleet["latency"]
    lines = [
        f"{result['run']}: {result['count']:,} CPs, mode {result['mode']}, "
        f"held {result['hold_s']:g} s after the ramp",
        f"  connected          {fleet['connected']:,} (peak {fleet['peak_connected']:,} at once),"
        f" connect errors {fleet['connect_error_total']:,}, rate {fleet['connect_rate_per_s']}/s",
        f"  calls              {fleet['calls_ok']:,} ok, {fleet['calls_failed']:,} failed, "
        f"{fleet['calls_per_s']}/s",
        f"  latency (ms)       p50 {latency['p50_ms']}, p90 {latency['p90_ms']}, "
        f"p99 {latency['p99_ms']}, max {latency['max_ms']}",
        f"  fleet process      cpu {fleet['cpu_s']} s over {fleet['elapsed_s']} s "
        f"({result['fleet_cpu_share_of_one_core']} of one core), max rss {fleet['max_rss_mb']} MB "
        f"({result['fleet_kib_per_cp']} KiB per CP)",
        f"  echo server        cpu {result['echo_server']['cpu_s']} s",
    ]
    if result["mode"] == "closed":
        # Only a flat-out run measures the fleet's ceiling; elsewhere connecting dominates.
        lines.insert(
            -1, f"  fleet ceiling      {result['fleet_calls_per_cpu_s']:,} calls per CPU-second"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["closed", "idle"], help="run one of the two")
    parser.add_argument("--closed-count", type=int, default=1000)
    parser.add_argument("--closed-seconds", type=float, default=20.0)
    parser.add_argument("--idle-count", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--idle-interval", type=int, default=10, help="heartbeat interval, s")
    parser.add_argument("--ramp", type=float, default=1000.0, help="connections per second")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    for count in (args.closed_count, args.idle_count):
        if not 1 <= count <= MAX_COUNT:
            parser.error(f"counts must lie between 1 and {MAX_COUNT:,}")
    for seconds in (args.closed_seconds, args.idle_seconds):
        if not 0 < seconds <= MAX_SECONDS:
            parser.error(f"durations must lie between 0 and {MAX_SECONDS:g} s")
    runs = [
        Run("closed", args.closed_count, "closed", args.closed_seconds, args.ramp, 10, 200),
        Run(
            "idle",
            args.idle_count,
            "heartbeat",
            args.idle_seconds,
            args.ramp,
            args.idle_interval,
            200,
        ),
    ]
    results: dict[str, Any] = {
        "machine": machine(),
        "runs": [measure(run) for run in runs if args.only in (None, run.name)],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    info = results["machine"]
    print(
        f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"load average at start {info['load_average_at_start']}"
    )
    for result in results["runs"]:
        print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
