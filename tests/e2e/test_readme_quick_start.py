"""The README's quick start, run as written against the local stack.

The commands and the sample output are read from README.md itself, so the two cannot drift:
each command of the section's `bash` blocks (after `make run` and `make test`, which the
`stack` fixture and this test run stand for) runs in a new `bash` from the repository root, with
the stack's URL in place of `ws://localhost:8080` and its registry file as
`GATEWAY_REGISTRY_FILE`. The sample output block after a command must match what it prints.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field

import pytest

from gateway.registry.things_file import listed_ids, read_things
from tests.support.simulator_process import REPO_ROOT, SimulatorProcess
from tests.support.stack import LocalStack

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
DOCUMENTED_URL = "ws://localhost:8080"
SET_UP_COMMANDS = {"make run", "make test"}
ELISION = "..."


@dataclass
class Step:
    command: str
    comment: str = ""
    """What the README says after `#` on the command's line (e.g. the output it prints)."""
    sample_output: list[str] = field(default_factory=list)


def section(markdown: str, title: str) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else len(markdown)]


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced code block, in order."""
    return [
        (language, body.splitlines())
        for language, body in re.findall(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)
    ]


def quick_start_steps(markdown: str) -> list[Step]:
    """The commands of the quick start, each with the output block that follows it, if any."""
    steps: list[Step] = []
    for language, lines in fenced_blocks(section(markdown, "Quick start")):
        if language == "bash":
            for line in lines:
                command, _, comment = line.partition("#")
                if command.strip() and command.strip() not in SET_UP_COMMANDS:
                    steps.append(Step(command.strip(), comment.strip()))
        elif language == "" and steps:
            steps[-1].sample_output = [line for line in lines if line.strip()]
    return steps


def sample_pattern(line: str) -> re.Pattern[str]:
    """A sample line as a pattern: literal text, `...` standing for anything."""
    return re.compile("^" + ".*?".join(re.escape(part) for part in line.split(ELISION)) + "$")


def test_the_quick_start_is_read_from_the_readme() -> None:
    """The parsing above finds what the quick start shows (a guard for the test below)."""
    steps = quick_start_steps(README.read_text(encoding="utf-8"))
    commands = [step.command for step in steps]
    assert any("--cp-id CP1" in command for command in commands)
    assert any("--cp-id CP2" in command for command in commands)
    assert any(command.endswith("ocpp-things add CP2") for command in commands)
    assert all(DOCUMENTED_URL in command for command in commands if "simulate.py" in command)
    assert all(step.sample_output for step in steps if "simulate.py" in step.command)


async def start_command(command: str, stack: LocalStack) -> SimulatorProcess:
    """`command` in a new bash from the repository root, as a new terminal would run it."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GATEWAY_", "VIRTUAL_ENV", "PYTHON"))
    }
    environment["GATEWAY_REGISTRY_FILE"] = str(stack.registry_file)
    # Not the test run's virtualenv: the command must name what it needs itself.
    environment["PATH"] = os.pathsep.join(
        entry
        for entry in environment.get("PATH", "").split(os.pathsep)
        if not entry.startswith(str(REPO_ROOT))
    )
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command.replace(DOCUMENTED_URL, stack.ws_url),
        cwd=REPO_ROOT,
        env={**environment, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return SimulatorProcess(process)


async def run_step(step: Step, stack: LocalStack) -> str:
    """Run one step, check its sample output and exit status; its output."""
    process = await start_command(step.command, stack)
    try:
        for line in step.sample_output:
            await process.wait_for_line(sample_pattern(line).pattern, timeout=30)
        if "--cp-id CP1" in step.command:
            assert await process.interrupt() == 0, process.output  # Ctrl-C, as the README says
        elif "--cp-id CP2" in step.command:
            assert await process.wait() == 1, process.output
        else:
            assert await process.wait() == 0, process.output
            if step.comment.startswith("{"):
                assert json.loads(process.output) == json.loads(step.comment)
    finally:
        await process.kill()
    return process.output


async def test_the_readme_quick_start_works_as_written(stack: LocalStack) -> None:
    outputs = {}
    for step in quick_start_steps(README.read_text(encoding="utf-8")):
        outputs[step.command] = await run_step(step, stack)
    listed = next(output for command, output in outputs.items() if command.endswith(" list"))
    things = [thing["thingName"] for thing in json.loads(listed)["things"]]
    assert things[0] == "CP1"
    assert things[-1] == "CP2"
    assert "CP2" not in listed_ids(read_things(stack.registry_file))  # removed again
