"""The JMeter plan, run non-GUI by scripts/run_jmeter.sh against the local stack."""

from __future__ import annotations

import csv
import os
import subprocess
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scripts.deploy_tools import REPO_ROOT, find_tool, jmeter_home
from tests.support.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RUN_JMETER = REPO_ROOT / "scripts" / "run_jmeter.sh"
CPS = 20
HEARTBEATS = 2
REFUSED = 2


def run_plan(
    stack: LocalStack, out_dir: Path, *parameters: str
) -> subprocess.CompletedProcess[str]:
    address = urlsplit(stack.ws_url)
    find_tool("java")
    env = {
        **os.environ,
        "JMETER_HOME": str(jmeter_home()),
        "OUT_DIR": str(out_dir),
        "JVM_ARGS": "-Xms128m -Xmx512m",
    }
    return subprocess.run(
        [
            str(RUN_JMETER),
            f"-Jhost={address.hostname}",
            f"-Jport={address.port}",
            "-Jrampup=2",
            "-Jinterval=100",
            "-Jtimeout=10000",
            *parameters,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


def read_samples(jtl: Path) -> list[dict[str, str]]:
    with jtl.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_charge_points_boot_and_heartbeat_with_zero_errors(
    stack: LocalStack, tmp_path: Path
) -> None:
    stack.register(*(f"JM{number:06d}" for number in range(1, CPS + 1)))
    result = run_plan(
        stack,
        tmp_path,
        f"-Jcps={CPS}",
        f"-Jheartbeats={HEARTBEATS}",
        "-Jprefix=JM",
        f"-Jrefused={REFUSED}",
        "-Jrefused_prefix=JMUNKNOWN",
    )
    assert result.returncode == 0, (
        f"{result.stdout}\n{result.stderr}\n{stack.gateway.log()[-3000:]}"
    )
    samples = read_samples(tmp_path / "results.jtl")
    failures = [f"{s['label']}: {s['failureMessage']}" for s in samples if s["success"] != "true"]
    assert failures == []
    assert Counter(s["label"] for s in samples) == {
        "connect": CPS,
        "BootNotification": CPS,
        "Heartbeat": CPS * HEARTBEATS,
        "close": CPS,
        "refused with 1008": REFUSED,
    }
    summary = (tmp_path / "summary.txt").read_text()
    assert f"total: {CPS * (3 + HEARTBEATS) + REFUSED} samples, 0 errors" in summary
    assert (tmp_path / "report" / "index.html").is_file(), "the HTML report was not written"


def test_assertions_fail_the_run_when_charge_points_are_refused(
    stack: LocalStack, tmp_path: Path
) -> None:
    env_out = tmp_path / "refused"
    result = run_plan(
        stack,
        env_out,
        "-Jcps=2",
        "-Jheartbeats=1",
        "-Jprefix=NOTREGISTERED",
        "-Jrefused=0",
    )
    assert result.returncode == 1, f"{result.stdout}\n{result.stderr}"
    samples = read_samples(env_out / "results.jtl")
    failed = {s["label"] for s in samples if s["success"] != "true"}
    assert "BootNotification" in failed
    messages = " ".join(s["failureMessage"] for s in samples)
    assert "close 1008 Charge Point NOTREGISTERED000001 not registered as an IoT Thing" in messages
    assert "errors" in (env_out / "summary.txt").read_text()


def local_stack_config() -> tuple[bool, int]:
    """Whether `make run`'s broker config exists in the repository, and when it was written."""
    config = REPO_ROOT / ".run" / "mosquitto.conf"
    return (True, config.stat().st_mtime_ns) if config.exists() else (False, 0)


def test_jmeter_local_runs_the_plan_against_a_stack_of_its_own(tmp_path: Path) -> None:
    before = local_stack_config()
    env = {
        **os.environ,
        "JMETER_HOME": str(jmeter_home()),
        "OUT_DIR": str(tmp_path),
        "JMETER_HTML_REPORT": "0",
        "JVM_ARGS": "-Xms128m -Xmx512m",
    }
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "jmeter_local.sh"), "-Jcps=3", "-Jheartbeats=1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "total: 13 samples, 0 errors" in (tmp_path / "summary.txt").read_text()
    # Its broker keeps its config and persistence elsewhere: a `make run` in another terminal
    # uses .run/, and two brokers saving to one file crash each other.
    assert local_stack_config() == before


def test_jmeter_local_refuses_a_host_of_the_caller_s_choice(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "jmeter_local.sh"), "-Jhost=10.0.0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "the local stack chooses host and port" in result.stderr
