"""Admission under storms and abuse: figures for the password checks and the storm control.

    python -m bench.admission                  # all three runs, a few minutes
    python -m bench.admission --only cold      # 10,000 profile-1 CPs, cold cache
    python -m bench.admission --only wrong     # a legitimate CP beside 400 wrong passwords
    python -m bench.admission --only storm     # 20,000 CPs dialling at once, two fleets
    python -m bench.admission --only storm --compare   # and again without the threshold
    python -m bench.admission --only cold --compare    # and 1,000 CPs with scrypt hashes

- `cold`: a freshly started gateway (nothing verified yet) with security profile 1 and 10,000
  passwords in its file (salted SHA-256, as `ocpp-things password` stores 16+ characters);
  10,000 fleet CPs dial at once (500 handshakes in flight, as in bench/run.py) with the right
  password, boot and close. Prints the seconds from the first dial to the last connect (target:
  all within 20 s) and until the last one was done.
- `wrong`: an attacker process keeps 400 wrong-password handshakes in flight from 127.0.0.1;
  a legitimate CP dials from 127.0.0.2 again and again. Prints the median and the worst
  handshake time of the legitimate CP (target: within 1 s), with the failed-check limits on
  (the default) and off (the hash alone), and the gateway's 429 and wrong-password counts.
- `storm`: 20,000 CPs dial at once against one gateway (shared link; two fleet processes of
  10,000, as a process may hold 20,000 files on these machines). Past
  `GATEWAY_MAX_HANDSHAKES`, the gateway answers 503 with a jittered Retry-After; the fleet
  honours it. Each CP boots, sends a Heartbeat and closes. Prints how many connected, the
  503s, the timeouts (target: none) and the seconds until the last one was done.

Everything runs on loopback, bounded in count and time. A bench responder answers the calls
(`bench.responder`). The CPs close after their Heartbeat so that 20,000 fit under the gateway's
open-files limit (20,000 here, so about 19,000 at once in shared mode).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.run import REPO_ROOT, fleet_command, process
from gateway.security import hash_password
from tests.support.mosquitto import MosquittoProcess, start_broker
from tests.support.ports import free_port

PASSWORD = "bench password of 28 chars!!"
FLEET_TIMEOUT = 240.0


def gateway_env(broker: MosquittoProcess, port: int, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_MQTT_URL": broker.url,
        "GATEWAY_LINK_MODE": "shared",
        "GATEWAY_REGISTRY": "allow-all",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_PING_INTERVAL": "60",
        "GATEWAY_REGISTRY_REVALIDATE_INTERVAL": "0",
        **extra,
    }


def password_file(cp_ids: list[str], password: str, slow: bool = False) -> Path:
    """One line per id; `slow`: scrypt, as files written before salted SHA-256 hold."""
    lines = []
    for cp_id in cp_ids:
        lines.append(f"{cp_id}:{hash_password(password.encode(), slow=slow).encode()}\n")
    text = "".join(lines)
    path = Path(tempfile.mkstemp(prefix="bench-passwords-", suffix=".txt")[1])
    path.write_text(text)
    return path


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ocpp_gateway_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def run_fleets(commands: list[list[str]]) -> list[dict[str, Any]]:
    children = [
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for command in commands
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=FLEET_TIMEOUT)
        try:
            results.append(dict(json.loads(out)))
        except json.JSONDecodeError as exc:
            raise RuntimeError(f"a fleet failed:\n{out.decode()}\n{err.decode()[-2000:]}") from exc
    return results


# Handshakes in flight per fleet process, as in bench/run.py: with more, the fleet process
# itself (one core, shared with the gateway) is what makes handshakes time out.
FLEET_IN_FLIGHT = 500


def once_each(
    count: int,
    prefix: str,
    start: int = 0,
    *extra: str,
    in_flight: int = FLEET_IN_FLIGHT,
    calls: int = 1,
) -> list[str]:
    """Fleet options: `count` CPs dial at once (`in_flight` handshakes at a time), boot, send
    `calls` Heartbeats and close; a refusal's Retry-After is obeyed, else the OCPP back-off."""
    return [
        *("--count", str(count), "--id-prefix", prefix, "--id-start", str(start)),
        *("--ramp", "0", "--concurrency-limit", str(min(count, in_flight))),
        *("--calls", str(calls), "--mode", "closed"),
        *("--reconnect", "--retry-wait-minimum", "5", "--retry-random-range", "5"),
        *extra,
    ]


def connect_span(result: dict[str, Any]) -> float | None:
    """Seconds from the first dial to the last connect: the fleet's connect rate is over that."""
    rate = result["connect_rate_per_s"]
    return round(result["connected"] / rate, 1) if rate else None


# -- cold: 10,000 profile-1 CPs after a restart -----------------------------------------------


def cold(broker: MosquittoProcess, count: int, slow: bool = False) -> dict[str, Any]:
    cp_ids = [f"COLD{n:05d}" for n in range(count)]
    path = password_file(cp_ids, PASSWORD, slow)
    port = free_port()
    env = gateway_env(broker, port, GATEWAY_SECURITY_PROFILE="1", GATEWAY_PASSWORD_FILE=str(path))
    try:
        with process([sys.executable, "-m", "gateway"], env, ready_port=port):
            url = f"ws://127.0.0.1:{port}"
            options = once_each(count, "COLD", 0, "--password", PASSWORD, calls=0)
            (result,) = run_fleets([fleet_command(url, *options)])
            metrics = scrape(port)
    finally:
        path.unlink()
    return {
        "run": "cold (scrypt hashes)" if slow else "cold",
        "cps": count,
        "connected": result["connected"],
        "boots_accepted": result["boots_accepted"],
        "all_connected_s": connect_span(result),
        "all_done_s": round(result["elapsed_s"], 1),
        "connect_rate_per_s": result["connect_rate_per_s"],
        "connect_errors": result["connect_errors"],
        "wrong_passwords": metrics.get("ocpp_gateway_auth_wrong_passwords_total", 0.0),
    }


# -- wrong: 400 wrong passwords in flight, one legitimate CP ----------------------------------


def basic(cp_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def attack(url: str, in_flight: int, seconds: float) -> None:
    """Keep `in_flight` wrong-password handshakes going from 127.0.0.1 for `seconds`."""
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + seconds

    async def one_attacker(number: int) -> None:
        attempt = 0
        cp_id = f"WRONG{number:03d}"
        while time.monotonic() < deadline:
            attempt += 1
            try:
                async with connect(
                    f"{url}/{cp_id}",
                    subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                    additional_headers=basic(cp_id, f"guess {attempt}"),
                    local_addr=("127.0.0.1", 0),
                    open_timeout=10,
                ):
                    pass
            except Exception:  # 401, 429, timeouts: an attacker does not care
                pass

    await asyncio.gather(*(one_attacker(n) for n in range(in_flight)))


async def legitimate_dials(url: str, count: int) -> list[float]:
    from websockets.asyncio.client import connect

    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        async with connect(
            f"{url}/LEGIT",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic("LEGIT", PASSWORD),
            local_addr=("127.0.0.2", 0),
            open_timeout=30,
        ):
            seconds.append(time.perf_counter() - started)
        await asyncio.sleep(0.2)
    return seconds


def wrong(broker: MosquittoProcess, in_flight: int, limits: bool) -> dict[str, Any]:
    path = password_file(["LEGIT"], PASSWORD)
    port = free_port()
    extra = {} if limits else {"GATEWAY_AUTH_FAILURES_PER_ID": "0"}
    if not limits:
        extra["GATEWAY_AUTH_FAILURES_PER_ADDRESS"] = "0"
    env = gateway_env(
        broker, port, GATEWAY_SECURITY_PROFILE="1", GATEWAY_PASSWORD_FILE=str(path), **extra
    )
    url = f"ws://127.0.0.1:{port}"
    attacker_command = [
        *(sys.executable, "-m", "bench.admission", "--attack", url),
        *("--in-flight", str(in_flight)),
    ]
    try:
        with (
            process([sys.executable, "-m", "gateway"], env, ready_port=port),
            process(attacker_command, {}),
        ):
            time.sleep(3.0)  # the attack at full strength
            seconds = asyncio.run(legitimate_dials(url, 20))
            metrics = scrape(port)
    finally:
        path.unlink()
    return {
        "run": f"wrong ({'limits on' if limits else 'limits off'})",
        "wrong_in_flight": in_flight,
        "legit_median_s": round(statistics.median(seconds), 3),
        "legit_max_s": round(max(seconds), 3),
        "wrong_passwords": metrics.get("ocpp_gateway_auth_wrong_passwords_total", 0.0),
        "rate_limited": metrics.get("ocpp_gateway_auth_rate_limited_id_total", 0.0)
        + metrics.get("ocpp_gateway_auth_rate_limited_address_total", 0.0),
    }


# -- storm: 20,000 CPs at once -----------------------------------------------------------------


def storm(
    broker: MosquittoProcess, count: int, in_flight: int, threshold: bool = True
) -> dict[str, Any]:
    port = free_port()
    env = gateway_env(broker, port)
    if not threshold:
        env["GATEWAY_MAX_HANDSHAKES"] = str(10 * count)
    url = f"ws://127.0.0.1:{port}"
    half = count // 2
    with process([sys.executable, "-m", "gateway"], env, ready_port=port):
        results = run_fleets(
            [
                fleet_command(url, *once_each(half, "STORM", 0, in_flight=in_flight)),
                fleet_command(url, *once_each(count - half, "STORM", half, in_flight=in_flight)),
            ]
        )
        metrics = scrape(port)
    errors: dict[str, int] = {}
    for result in results:
        for cause, number in result["connect_errors"].items():
            errors[cause] = errors.get(cause, 0) + number
    return {
        "run": "storm" if threshold else "storm (threshold off)",
        "cps": count,
        "fleet_in_flight": 2 * min(half, in_flight),
        "connected": sum(result["connected"] for result in results),
        "boots_accepted": sum(result["boots_accepted"] for result in results),
        "all_done_s": round(max(result["elapsed_s"] for result in results), 1),
        "refused_503": errors.get("http_503", 0),
        "timeouts": errors.get("timeout", 0),
        "connect_errors": errors,
        "storm_refusals": metrics.get('ocpp_gateway_admissions_refused_total{reason="storm"}', 0.0),
        "limit_refusals": metrics.get(
            'ocpp_gateway_admissions_refused_total{reason="connection_limit"}', 0.0
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["cold", "wrong", "storm"])
    parser.add_argument("--cold-cps", type=int, default=10_000)
    parser.add_argument("--storm-cps", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=400, help="wrong passwords in flight")
    parser.add_argument(
        "--storm-in-flight",
        type=int,
        default=2_000,
        help="handshakes in flight per fleet process in the storm (two processes)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the storm without its threshold, and 1,000 cold CPs with scrypt hashes",
    )
    parser.add_argument("--attack", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--attack-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attack:
        asyncio.run(attack(args.attack, args.in_flight, args.attack_seconds))
        return
    if not 1 <= args.storm_cps <= 20_000 or not 1 <= args.cold_cps <= 19_000:
        parser.error("--storm-cps at most 20,000 and --cold-cps at most 19,000")
    broker = start_broker(["max_connections -1"])
    responder = [sys.executable, "-m", "bench.responder", "--mqtt-url", broker.url]
    rows = []
    try:
        with process(responder, {}, ready_line="bench responder: subscribed"):
            if args.only in (None, "cold"):
                rows.append(cold(broker, args.cold_cps))
                print(json.dumps(rows[-1]), flush=True)
                if args.compare:
                    rows.append(cold(broker, min(args.cold_cps, 1_000), slow=True))
                    print(json.dumps(rows[-1]), flush=True)
            if args.only in (None, "wrong"):
                for limits in (True, False):
                    rows.append(wrong(broker, args.in_flight, limits))
                    print(json.dumps(rows[-1]), flush=True)
            if args.only in (None, "storm"):
                for threshold in (True, False) if args.compare else (True,):
                    rows.append(storm(broker, args.storm_cps, args.storm_in_flight, threshold))
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        broker.stop()
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores shared)", flush=True)


if __name__ == "__main__":
    main()
