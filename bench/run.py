"""Gateway benchmark: each broker link against two ceilings measured in the same run.

Starts its own Mosquitto, the bench responder (a minimal CSMS), the gateway in each link mode,
and drives the simulator's fleet mode against it, sampling the gateway's CPU seconds and memory
from /proc. Every closed-loop run also reports the CPU share of each process involved (the
busiest one saturates first) and the machine's, and the calls/s the machine could reach if the
gateway (or the WebSocket echo server) cost nothing. The ceilings are a WebSocket-only OCPP
server (no broker: the most a WebSocket server in Python can relay here) and MQTT-only (virtual
CPs calling the responder through the broker, no WebSockets). Prints one JSON line per run,
then a table.

CPU per call is counted while every CP is connected: handshakes (and per CP on the broker, its
MQTT connection) would otherwise be spread over the calls of a short run. With `--mtls` the
gateway reaches the broker over mutual TLS, as it reaches AWS IoT Core; the responder and the
MQTT-only ceiling stay on plain MQTT.

    python -m bench.run                      # 1,000 CPs closed loop, idle check at 10,000 CPs
    python -m bench.run --cps 200 --idle-cps 2000 --duration 10 --modes shared
    python -m bench.run --mtls --idle-cps 0 --modes per-cp
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.mosquitto import MosquittoProcess
from tests.support.ports import free_port, wait_for_port
from tests.support.tls import TlsBroker, link_setup, make_pki

REPO_ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
IDLE_SETTLE = 8.0
PROGRESS_EVERY = 1.0
# How long the closed-loop fleet may take to connect every CP before its steady window.
CONNECT_ALLOWANCE = 60.0


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss_kb: int
    peak_rss_kb: int


def usage_of(pid: int) -> Usage:
    """CPU seconds (user + system) and memory of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Usage(cpu, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0]))


@dataclass(frozen=True)
class Sample:
    """CPU seconds of the named processes and the machine's (busy, total) ticks at one moment."""

    at: float
    machine: tuple[int, int]
    cpu_s: dict[str, float]


def sample(pids: Mapping[str, int]) -> Sample:
    first_line = Path("/proc/stat").read_text().splitlines()[0]
    cpu_s = {name: usage_of(pid).cpu_s for name, pid in pids.items()}
    return Sample(time.monotonic(), machine_ticks(first_line), cpu_s)


def machine_ticks(cpu_line: str) -> tuple[int, int]:
    """(busy, total) ticks from the `cpu` line of /proc/stat; idle and iowait are not busy."""
    ticks = [int(value) for value in cpu_line.split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def percent(part: float, whole: float) -> float:
    return round(100 * part / whole, 1) if whole > 0 else 0.0


def bound_calls_per_s(other_us_per_call: float | None, cores: int = CORES) -> int | None:
    """Calls/s the machine's cores could carry if only the processes besides the server ran."""
    return round(cores * 1e6 / other_us_per_call) if other_us_per_call else None


def cpu_figures(
    before: Sample,
    after: Sample,
    calls: int,
    server: str | None,
    own_cpu_s: Mapping[str, float],
) -> dict[str, Any]:
    """Per-process CPU share (percent of one core) over the load between two samples.

    `own_cpu_s` holds CPU seconds a load process reported itself for its whole life, which lies
    within the interval. Everything but `server` counts in `other_us_per_call`.
    """
    seconds = after.at - before.at
    cpu_s = {**own_cpu_s, **{name: after.cpu_s[name] - before.cpu_s[name] for name in before.cpu_s}}
    other_s = sum(value for name, value in cpu_s.items() if name != server)
    other_us_per_call = round(other_s / calls * 1e6, 1) if calls > 0 else None
    return {
        "cpu_percent": {name: percent(value, seconds) for name, value in cpu_s.items()},
        "machine_busy_percent": percent(
            after.machine[0] - before.machine[0], after.machine[1] - before.machine[1]
        ),
        "other_us_per_call": other_us_per_call,
        "bound_calls_per_s": bound_calls_per_s(other_us_per_call),
    }


def busiest(cpu_percent: Mapping[str, float] | None) -> str:
    """`gateway 99%`: the process that saturates first."""
    if not cpu_percent:
        return ""
    name = max(cpu_percent, key=lambda key: cpu_percent[key])
    return f"{name} {cpu_percent[name]:.0f}%"


@contextmanager
def process(
    args: list[str],
    env: dict[str, str],
    ready_port: int | None = None,
    ready_line: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    log = Path(tempfile.mkstemp(prefix="bench-", suffix=".log")[1])
    child = subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        if ready_port is not None:
            wait_for_port("127.0.0.1", ready_port, timeout=20)
        if ready_line is not None:
            deadline = time.monotonic() + 20
            while ready_line not in log.read_text(errors="replace"):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def fleet_command(url: str, *extra: str) -> list[str]:
    """The simulator's fleet mode, summary as JSON on stdout, no progress lines."""
    return [
        *(sys.executable, "-m", "simulator.fleet", "--url", url),
        *("--json", "--progress-every", "0", *extra),
    ]


def fleet(url: str, *extra: str) -> dict[str, Any]:
    command = fleet_command(url, *extra)
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return _summary(done.stdout, done.stderr)


def _summary(stdout: str, stderr: str) -> dict[str, Any]:
    try:
        return dict(json.loads(stdout))
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"the fleet failed:\n{stdout}\n{stderr}") from exc


PROGRESS_LINE = re.compile(r"connected ([\d,]+)/([\d,]+) .*\| calls ([\d,]+) ok")


@dataclass(frozen=True)
class Tick:
    """One progress line of the fleet, and the server's CPU seconds when it was read."""

    connected: int
    requested: int
    calls: int
    server_cpu_s: float


def parse_progress(line: str) -> tuple[int, int, int] | None:
    """(connected, requested, calls answered) from a fleet progress line; None for others."""
    match = PROGRESS_LINE.search(line)
    if match is None:
        return None
    connected, requested, calls = (int(group.replace(",", "")) for group in match.groups())
    return connected, requested, calls


def steady_us_per_call(ticks: Sequence[Tick]) -> float | None:
    """The server's CPU per call while every CP was connected, in µs.

    Handshakes (and, per CP on the broker, its MQTT connection) cost far more than a call; over
    a short run they would be spread over the calls. The first tick with every CP connected is
    skipped: the last ones to connect may still be opening their broker channel.
    """
    steady = [tick for tick in ticks if tick.connected == tick.requested > 0][1:]
    if len(steady) < 2:
        return None
    first, last = steady[0], steady[-1]
    calls = last.calls - first.calls
    if calls <= 0:
        return None
    return round((last.server_cpu_s - first.server_cpu_s) / calls * 1e6, 1)


def closed_loop(
    url: str, args: argparse.Namespace, id_prefix: str, server_pid: int
) -> tuple[dict[str, Any], float | None]:
    """The same load for the ceiling and every gateway: all CPs at once, next call on answer.

    The fleet runs until every CP has been connected for `args.duration` seconds (or gives up
    `CONNECT_ALLOWANCE` seconds later). Returns its summary and the server's CPU µs per call
    over that steady window.
    """
    command = fleet_command(
        url,
        *("--count", str(args.cps), "--ramp", "0", "--mode", "closed"),
        *("--duration", str(args.duration + CONNECT_ALLOWANCE), "--id-prefix", id_prefix),
    )
    command[command.index("--progress-every") + 1] = str(PROGRESS_EVERY)
    child = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ticks: list[Tick] = []
    errors: list[str] = []
    # The first steady tick is skipped (`steady_us_per_call`); then one per PROGRESS_EVERY.
    steady_ticks_wanted = 2 + round(args.duration / PROGRESS_EVERY)

    def read_progress() -> None:
        assert child.stderr is not None
        steady = 0
        for line in child.stderr:
            progress = parse_progress(line)
            if progress is None:
                errors.append(line)
                continue
            tick = Tick(*progress, usage_of(server_pid).cpu_s)
            ticks.append(tick)
            steady = steady + 1 if tick.connected == tick.requested else 0
            if steady == steady_ticks_wanted:
                child.terminate()  # the fleet ends early, with its summary

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    assert child.stdout is not None
    stdout = child.stdout.read()
    child.wait()
    reader.join()
    return _summary(stdout, "".join(errors)), steady_us_per_call(ticks)


def per_call_cpu(steady_us: float | None, whole_run_s: float, calls: int) -> dict[str, Any]:
    """The server's CPU per 1,000 calls (ms = µs per call): with every CP connected, and over
    the whole run, handshakes and closes included."""
    return {
        "cpu_ms_per_1000_calls": steady_us,
        "cpu_ms_per_1000_calls_whole_run": round(whole_run_s / calls * 1e6, 1) if calls else None,
    }


def connections_of(port: int) -> int:
    """Connected CPs as the gateway reports them; -1 while it is too busy to answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return int(json.loads(response.read())["connections"])
    except OSError:
        return -1


def ws_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with process(
        [sys.executable, "-m", "tests.support.echo_csms", "--port", str(port)], {}, ready_port=port
    ) as echo:
        before = sample({"echo": echo.pid})
        result, steady = closed_loop(f"ws://127.0.0.1:{port}", args, "WS", echo.pid)
        after = sample({"echo": echo.pid})
    calls = int(result["calls_ok"])
    figures = cpu_figures(before, after, calls, "echo", {"fleet": float(result["cpu_s"])})
    echo_s = after.cpu_s["echo"] - before.cpu_s["echo"]
    return {
        "run": "ceiling-websocket",
        "cps": args.cps,
        **_calls(result),
        # The server's own CPU per call: what relaying costs with no broker in the way.
        **per_call_cpu(steady, echo_s, calls),
        **figures,
    }


def mqtt_ceiling(
    args: argparse.Namespace, broker: MosquittoProcess, shared: Mapping[str, int]
) -> dict[str, Any]:
    """`shared`: the pids of the broker and the responder, sampled during the load."""
    before = sample(shared)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.mqtt_ceiling",
            "--mqtt-url",
            broker.url,
            "--count",
            str(args.cps),
            "--duration",
            str(args.duration),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    after = sample(shared)
    result = json.loads(done.stdout)
    return {
        "run": "ceiling-mqtt",
        "cps": args.cps,
        "calls_per_s": result["calls_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        **cpu_figures(
            before, after, int(result["calls"]), None, {"mqtt_ceiling": float(result["cpu_s"])}
        ),
    }


def gateway_runs(
    args: argparse.Namespace,
    link: Mapping[str, str],
    mode: str,
    shared: Mapping[str, int],
) -> Iterator[dict[str, Any]]:
    """`link`: the gateway's broker settings (URL, implementation, TLS files) as environment."""
    port = free_port()
    impl = link["GATEWAY_LINK_IMPL"]
    env = {
        **link,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_LINK_MODE": mode,
        "GATEWAY_REGISTRY": "allow-all",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_MAX_CONNECTIONS": "19000",
        "GATEWAY_PING_INTERVAL": "60",
        "GATEWAY_REGISTRY_REVALIDATE_INTERVAL": "0",
    }
    url = f"ws://127.0.0.1:{port}"
    name = f"gateway-{mode}-{impl}" + ("-mtls" if args.mtls else "")
    with process([sys.executable, "-m", "gateway"], env, ready_port=port) as gateway:
        # Throughput: closed loop, every CP calls again as soon as it is answered.
        pids = {"gateway": gateway.pid, **shared}
        before = sample(pids)
        result, steady = closed_loop(url, args, "T", gateway.pid)
        after = sample(pids)
        calls = int(result["calls_ok"])
        gateway_s = after.cpu_s["gateway"] - before.cpu_s["gateway"]
        yield {
            "run": name,
            "phase": "calls",
            "cps": args.cps,
            **_calls(result),
            **per_call_cpu(steady, gateway_s, calls),
            # Not a connect rate: the first CPs' calls compete with the later CPs' handshakes.
            "connect_rate_under_load_per_s": result["connect_rate_per_s"],
            **cpu_figures(
                before,
                after,
                int(result["calls_ok"]),
                "gateway",
                {"fleet": float(result["cpu_s"])},
            ),
        }
        if args.idle_cps:
            yield idle_run(args, url, port, gateway.pid, name)


def idle_run(args: argparse.Namespace, url: str, port: int, pid: int, name: str) -> dict[str, Any]:
    """Connect many CPs as fast as they come, then hold them idle and measure the cost."""
    before = usage_of(pid)
    holder = subprocess.Popen(
        fleet_command(
            url,
            *("--count", str(args.idle_cps), "--ramp", "0", "--concurrency-limit", "500"),
            *("--mode", "heartbeat", "--heartbeat-interval", "60"),
            *("--duration", str(args.idle_hold + 30), "--id-prefix", "I"),
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    started = time.monotonic()
    connected_after: float | None = None
    while time.monotonic() - started < 120:
        if connections_of(port) >= args.idle_cps:
            connected_after = time.monotonic() - started
            break
        time.sleep(0.2)
    time.sleep(IDLE_SETTLE)  # let the boots and first heartbeats pass
    settled = usage_of(pid)
    connections = connections_of(port)
    time.sleep(args.idle_hold)
    held = usage_of(pid)
    holder.terminate()
    summary_text, _ = holder.communicate(timeout=60)
    return {
        "run": name,
        "phase": "idle",
        "cps": args.idle_cps,
        "connected": connections,
        "all_connected_s": None if connected_after is None else round(connected_after, 2),
        "connect_rate_per_s": (
            round(args.idle_cps / connected_after, 1) if connected_after else None
        ),
        "rss_kb_per_cp": round((settled.rss_kb - before.rss_kb) / max(1, connections), 1),
        "idle_cpu_percent": round((held.cpu_s - settled.cpu_s) / args.idle_hold * 100, 2),
        "fleet_exit": holder.returncode,
        "fleet_summary_bytes": len(summary_text or ""),
    }


def _calls(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "calls_per_s": result["calls_per_s"],
        "p50_ms": result["latency"]["p50_ms"],
        "p99_ms": result["latency"]["p99_ms"],
        "calls_failed": result["calls_failed"],
        "connect_errors": result["connect_error_total"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    ceiling = next((r for r in rows if r["run"] == "ceiling-websocket"), None)
    header = (
        f"{'run':28} {'phase':6} {'CPs':>6} {'calls/s':>9} {'vs ws':>6} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'cpu ms/1k':>9} {'cpu/ws':>6} {'conn/s':>8} {'KB/CP':>6} {'idle cpu%':>9} "
        f"{'busiest':16} {'bound':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = cpu_ratio = ""
        if ceiling and row.get("calls_per_s") and row["run"] != "ceiling-websocket":
            ratio = f"{row['calls_per_s'] / ceiling['calls_per_s']:.2f}"
        cpu = row.get("cpu_ms_per_1000_calls")
        if ceiling and cpu and ceiling.get("cpu_ms_per_1000_calls") and row is not ceiling:
            cpu_ratio = f"{cpu / ceiling['cpu_ms_per_1000_calls']:.2f}"
        lines.append(
            f"{row['run']:28} {row.get('phase', ''):6} {row['cps']:>6} "
            f"{_cell(row.get('calls_per_s')):>9} {ratio:>6} {_cell(row.get('p50_ms')):>8} "
            f"{_cell(row.get('p99_ms')):>8} {_cell(cpu):>9} {cpu_ratio:>6} "
            f"{_cell(row.get('connect_rate_per_s')):>8} {_cell(row.get('rss_kb_per_cp')):>6} "
            f"{_cell(row.get('idle_cpu_percent')):>9} {busiest(row.get('cpu_percent')):16} "
            f"{_cell(row.get('bound_calls_per_s')):>7}"
        )
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cps", type=int, default=1000, help="CPs in the closed-loop runs")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--idle-cps", type=int, default=10000, help="0: skip the idle run")
    parser.add_argument("--idle-hold", type=float, default=20.0)
    parser.add_argument("--modes", default="shared,per-cp")
    parser.add_argument("--impls", default="awscrt,aiomqtt")
    parser.add_argument("--per-cp-idle-cps", type=int, default=2000)
    parser.add_argument(
        "--mtls",
        action="store_true",
        help="the gateway reaches the broker over mutual TLS (as AWS IoT Core), not plain MQTT",
    )
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    pki = make_pki()
    tls_broker = TlsBroker(pki).start("max_connections -1")
    broker = tls_broker.process
    if broker is None or broker.process is None:
        raise RuntimeError("the broker did not start")
    mosquitto_pid = broker.process.pid

    def link(impl: str) -> dict[str, str]:
        if not args.mtls:
            return {"GATEWAY_MQTT_URL": broker.url, "GATEWAY_LINK_IMPL": impl}
        setup = link_setup(f"{impl}-mtls", tls_broker)
        return {**setup.env, "GATEWAY_MQTT_URL": setup.url}

    print(f"gateway to broker: {'mutual TLS' if args.mtls else 'plain MQTT'}", flush=True)
    try:
        emit(ws_ceiling(args))
        with process(
            [sys.executable, "-m", "bench.responder", "--mqtt-url", broker.url],
            {},
            ready_line="subscribed",
        ) as responder:
            shared = {"mosquitto": mosquitto_pid, "responder": responder.pid}
            emit(mqtt_ceiling(args, broker, shared))
            for mode in args.modes.split(","):
                for impl in args.impls.split(","):
                    mode_args = argparse.Namespace(**vars(args))
                    if mode == "per-cp":
                        mode_args.idle_cps = min(args.idle_cps, args.per_cp_idle_cps)
                    for row in gateway_runs(mode_args, link(impl), mode, shared):
                        emit(row)
    finally:
        tls_broker.stop()
        shutil.rmtree(pki.directory, ignore_errors=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
