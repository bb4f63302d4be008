"""The local stack for end-to-end tests: a broker, the processor and the gateway as processes.

Configured the way `make run` configures them (file registry with CP1 registered), on free
ports, so tests see what a user of the local stack sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.registry.things_file import add_ids, read_things, write_atomically

from .gateway import REPO_ROOT, GatewayProcess
from .mosquitto import MosquittoProcess


class ProcessorProcess:
    def __init__(self, broker_url: str, **env: str) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="processor-", suffix=".log")[1])
        self.env = {
            **os.environ,
            "PROCESSOR_MQTT_URL": broker_url,
            "PROCESSOR_LOG_FORMAT": "json",
            "PROCESSOR_HTTP_PORT": "0",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "processor"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # The processor logs broker.connected once its subscription is acknowledged.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the processor exited at start:\n{self.log()}")
            if "broker.connected" in self.log():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the processor did not subscribe in time:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class LocalStack:
    def __init__(self, broker: MosquittoProcess) -> None:
        self.broker = broker
        self.registry_file = Path(tempfile.mkdtemp(prefix="stack-")) / "things.txt"
        self.registry_file.write_text(
            (REPO_ROOT / "config" / "things.txt").read_text(), encoding="utf-8"
        )
        self.processor = ProcessorProcess(broker.url)
        self.gateway = GatewayProcess(
            broker.url,
            GATEWAY_REGISTRY="file",
            GATEWAY_REGISTRY_FILE=str(self.registry_file),
            GATEWAY_REGISTRY_FILE_POLL_INTERVAL="0.2",
        )

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway.port}"

    def register(self, *cp_ids: str) -> None:
        """Add ids to the stack's registry file; the gateway picks them up within a second."""
        edit = add_ids(read_things(self.registry_file), cp_ids)
        write_atomically(self.registry_file, edit.text)
        time.sleep(0.5)  # two polls of the registry file

    def start(self) -> None:
        self.processor.start()
        self.gateway.start()

    def stop(self) -> None:
        self.gateway.stop()
        self.processor.stop()
