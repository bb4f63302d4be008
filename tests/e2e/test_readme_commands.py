"""The README's "Sending a command to a charge point" examples, run exactly as written.

The commands are read from the README: the first code block subscribes to `CP1/in`, each
following one publishes a CALL on `CP1/out`. They run under bash against a broker, the processor,
the gateway and the simulator as CP1, with `MQTT_PORT` pointing at the test's broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil

import pytest

from tests.support.gateway import running_gateway, ws_url
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import mqtt_peer
from tests.support.processor import running_processor
from tests.support.simulator_process import REPO_ROOT, SimulatorProcess

pytestmark = pytest.mark.integration

SECTION = "## Sending a command to a charge point"


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_a_subscriber_and_the_three_commands() -> None:
    subscriber, *publishers = readme_commands()
    assert subscriber.startswith("mosquitto_sub ") and "-t CP1/in" in subscriber
    actions = [json.loads(re.search(r"-m '(.*)'", p).group(1))[2] for p in publishers]  # type: ignore[union-attr]
    assert actions == ["GetVariables", "RequestStartTransaction", "Reset"]


async def test_readme_commands_reach_the_simulator_and_its_answers_come_back(
    private_broker: MosquittoProcess,
) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.fail("mosquitto_pub is missing: run scripts/install-test-tools.sh")
    subscriber, *publishers = readme_commands()
    env = {**os.environ, "MQTT_PORT": str(private_broker.port)}
    async with (
        running_processor(private_broker.url),
        running_gateway(private_broker.url) as gateway,
    ):
        simulator = await SimulatorProcess.start(
            "--url", ws_url(gateway, "").rstrip("/"), "--cp-id", "CP1"
        )
        watcher = await asyncio.create_subprocess_exec(
            "bash", "-c", subscriber, env=env, stdout=asyncio.subprocess.PIPE
        )
        assert watcher.stdout is not None
        lines: list[str] = []

        async def line_starting(prefix: str, timeout: float = 20.0) -> str:
            async def scan() -> str:
                while True:
                    for line in lines:
                        if line.startswith(prefix):
                            return line
                    assert watcher.stdout is not None
                    raw = await watcher.stdout.readline()
                    assert raw, "mosquitto_sub ended"
                    lines.append(raw.decode().rstrip("\n"))

            return await asyncio.wait_for(scan(), timeout)

        try:
            await simulator.wait_for_line(r"CP1: connected to central system")
            # The subscription is in place once a probe published to CP1/in comes back.
            async with mqtt_peer(private_broker.url, "probe/none") as peer:
                for attempt in range(100):
                    await peer.client.publish("CP1/in", f'[3,"probe-{attempt}",{{}}]', qos=1)
                    try:
                        await line_starting(f'[3,"probe-{attempt}"', timeout=0.2)
                        break
                    except TimeoutError:
                        continue
            for command in publishers:
                message_id = json.loads(re.search(r"-m '(.*)'", command).group(1))[1]  # type: ignore[union-attr]
                publisher = await asyncio.create_subprocess_exec("bash", "-c", command, env=env)
                assert await publisher.wait() == 0, command
                answer = json.loads(await line_starting(f'[3,"{message_id}"'))
                assert answer[0] == 3, answer
                if message_id == "get-1":
                    assert answer[2]["getVariableResult"][0]["attributeStatus"] == "Accepted"
                elif message_id == "start-1":
                    assert answer[2]["status"] == "Accepted"
                else:
                    assert answer[2]["status"] in {"Accepted", "Scheduled"}
        finally:
            watcher.kill()
            await watcher.wait()
            await simulator.kill()
