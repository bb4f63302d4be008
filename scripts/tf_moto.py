"""Run the Terraform configuration in `infra/` against moto_server, offline.

    python scripts/tf_moto.py serve --port 5000    moto_server with the stubs below, until Ctrl-C
    python scripts/tf_moto.py apply                 copy infra/, init, plan, apply, print the
                                                    outputs, destroy (about two minutes)

moto 5.2 implements every resource `infra/` declares, except the tag operations of IoT Core and
Application Auto Scaling (the provider calls them after creating a resource and retries an HTTP
500 for minutes) and IoT Core's event configurations (`aws_iot_event_configurations`: moto
answers UpdateEventConfigurations and DescribeEventConfigurations with an HTTP 500, "not
implemented"). `serve` adds those operations, keeping tags and event settings in memory, before
starting moto.

The provider is pointed at moto by an override file written next to a copy of `infra/`; the
configuration itself is applied unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA_DIR = REPO_ROOT / "infra"
PLUGIN_MIRROR = Path(os.environ.get("TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
REGION = "us-east-1"

# Every AWS service infra/ talks to, by the provider's endpoint name.
SERVICES = (
    "acm",
    "applicationautoscaling",
    "cloudwatchlogs",
    "ec2",
    "ecr",
    "ecs",
    "elbv2",
    "iam",
    "iot",
    "kms",
    "lambda",
    "route53",
    "sqs",
    "sts",
)

# Lambda handler module of the placeholder package used when no real one was built.
PLACEHOLDER_HANDLER = '''"""Placeholder package: build the real one with scripts/build_lambda.py."""


def handler(event, context):
    raise RuntimeError("placeholder processor package: deploy build/processor-lambda.zip")
'''


# --- moto with the missing tag operations ----------------------------------------------------


def install_tag_stubs() -> None:
    """Give moto's IoT and Application Auto Scaling in-memory tag operations."""
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot.responses import IoTResponse

    tags: dict[str, dict[str, str]] = {}

    def iot_tag_resource(self: Any) -> ActionResult:
        arn = self._get_param("resourceArn")
        pairs = self._get_param("tags") or []
        tags.setdefault(arn, {}).update({pair["Key"]: pair["Value"] for pair in pairs})
        return EmptyResult()

    def iot_untag_resource(self: Any) -> ActionResult:
        arn = self._get_param("resourceArn")
        for key in self._get_param("tagKeys") or []:
            tags.get(arn, {}).pop(key, None)
        return EmptyResult()

    def iot_list_tags_for_resource(self: Any) -> ActionResult:
        arn = self._get_param("resourceArn")
        pairs = [{"Key": key, "Value": value} for key, value in tags.get(arn, {}).items()]
        return ActionResult({"tags": pairs})

    def scaling_tag_resource(self: Any) -> ActionResult:
        arn = self._get_param("ResourceARN")
        tags.setdefault(arn, {}).update(self._get_param("Tags") or {})
        return EmptyResult()

    def scaling_untag_resource(self: Any) -> ActionResult:
        arn = self._get_param("ResourceARN")
        for key in self._get_param("TagKeys") or []:
            tags.get(arn, {}).pop(key, None)
        return EmptyResult()

    def scaling_list_tags_for_resource(self: Any) -> ActionResult:
        return ActionResult({"Tags": dict(tags.get(self._get_param("ResourceARN"), {}))})

    IoTResponse.tag_resource = iot_tag_resource  # type: ignore[attr-defined]
    IoTResponse.untag_resource = iot_untag_resource  # type: ignore[attr-defined]
    IoTResponse.list_tags_for_resource = iot_list_tags_for_resource  # type: ignore[attr-defined]
    ApplicationAutoScalingResponse.tag_resource = scaling_tag_resource  # type: ignore[attr-defined]
    ApplicationAutoScalingResponse.untag_resource = scaling_untag_resource  # type: ignore[attr-defined]
    ApplicationAutoScalingResponse.list_tags_for_resource = scaling_list_tags_for_resource  # type: ignore[attr-defined]


def install_event_configuration_stubs() -> None:
    """Give moto's IoT the account's event configurations, per region, in memory.

    As in AWS, every event type is reported, disabled until enabled, and an update changes only
    the types it names.
    """
    import botocore.session
    from botocore.model import StringShape
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot.responses import IoTResponse

    shape = botocore.session.get_session().get_service_model("iot").shape_for("EventType")
    assert isinstance(shape, StringShape)
    event_types: list[str] = list(shape.enum)
    settings: dict[str, dict[str, bool]] = {}

    def region_settings(response: Any) -> dict[str, bool]:
        return settings.setdefault(response.region, dict.fromkeys(event_types, False))

    def update_event_configurations(self: Any) -> ActionResult:
        changes = self._get_param("eventConfigurations") or {}
        region_settings(self).update(
            {name: bool(value.get("Enabled")) for name, value in changes.items()}
        )
        return EmptyResult()

    def describe_event_configurations(self: Any) -> ActionResult:
        current = region_settings(self)
        return ActionResult(
            {"eventConfigurations": {name: {"Enabled": on} for name, on in current.items()}}
        )

    IoTResponse.update_event_configurations = update_event_configurations  # type: ignore[attr-defined]
    IoTResponse.describe_event_configurations = describe_event_configurations  # type: ignore[attr-defined]


def serve(host: str, port: int) -> None:
    # The ECS task execution role attaches an AWS managed policy: moto must know it.
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    install_tag_stubs()
    install_event_configuration_stubs()
    from moto.server import main as moto_main

    moto_main(["-H", host, "-p", str(port)])


@contextlib.contextmanager
def moto_server(port: int | None = None, log_path: Path | None = None) -> Iterator[str]:
    """This script's `serve` in a subprocess; yields its endpoint URL."""
    port = port or free_port()
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log.close()  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on port {port} within {timeout:.0f}s")


# --- Terraform against it --------------------------------------------------------------------


def provider_override(endpoint: str) -> str:
    """HCL merged into infra/'s provider block: moto's endpoint, fake credentials, no retries."""
    endpoints = "\n".join(f'      {service} = "{endpoint}"' for service in SERVICES)
    return f"""# Written by scripts/tf_moto.py: points the aws provider at moto_server.
provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = false
  max_retries                 = 2

  endpoints {{
{endpoints}
  }}
}}
"""


def cli_config(mirror: Path = PLUGIN_MIRROR) -> str:
    """A Terraform CLI configuration that installs providers from a local mirror only."""
    return f"""provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["registry.terraform.io/*/*"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
"""


def placeholder_lambda_zip(path: Path) -> Path:
    """A minimal, reproducible processor package (fixed timestamps) for plans and tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            ("processor/__init__.py", ""),
            ("processor/aws_lambda.py", PLACEHOLDER_HANDLER),
        ):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
    return path


@dataclass
class Workspace:
    """A copy of infra/ with its own Terraform data dir, CLI config and variables."""

    directory: Path
    env: dict[str, str]

    def terraform(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [terraform_binary(), *args, "-no-color"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"terraform {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self.terraform("output", "-json").stdout)
        return {name: value["value"] for name, value in raw.items()}

    def state_resources(self) -> list[str]:
        result = self.terraform("state", "list", check=False)
        return [line for line in result.stdout.splitlines() if line.strip()]


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if found is None:
        raise RuntimeError(
            "terraform is required (>= 1.6): install it on PATH; offline, also put the "
            f"hashicorp/aws provider in a filesystem mirror at {PLUGIN_MIRROR} (TF_PLUGIN_MIRROR)"
        )
    return found


def workspace(
    root: Path, endpoint: str | None = None, variables: dict[str, Any] | None = None
) -> Workspace:
    """Copy infra/ into root/infra; with `endpoint`, add the moto provider override.

    The committed `.terraform.lock.hcl` is copied too: `terraform init` then installs exactly
    the provider it records (`-lockfile=readonly` proves the lock needs no change)."""
    if not (PLUGIN_MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        raise RuntimeError(
            f"no hashicorp/aws provider in the mirror {PLUGIN_MIRROR}: set TF_PLUGIN_MIRROR to "
            "a folder made by `terraform providers mirror` (or run online without this script)"
        )
    directory = root / "infra"
    shutil.copytree(
        INFRA_DIR,
        directory,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "*.tfvars"),
    )
    if endpoint:
        (directory / "moto_override.tf").write_text(provider_override(endpoint))
    values: dict[str, Any] = {"processor_zip": str(placeholder_lambda_zip(root / "processor.zip"))}
    values.update(variables or {})
    (directory / "test.auto.tfvars.json").write_text(json.dumps(values, indent=2))
    (root / "terraformrc").write_text(cli_config())
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "TF_CLI_CONFIG_FILE": str(root / "terraformrc"),
        "TF_DATA_DIR": str(root / "tf-data"),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    # Pass Terraform's own debugging switches through (TF_LOG=DEBUG TF_LOG_PATH=...).
    env.update({name: value for name, value in os.environ.items() if name.startswith("TF_LOG")})
    return Workspace(directory, env)


def apply_and_destroy(keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="tf-moto-"))
    with moto_server(log_path=root / "moto.log") as endpoint:
        ws = workspace(root, endpoint, {"things": ["CP1"]})
        steps = [
            ("init", ["init", "-input=false", "-backend=false"]),
            ("plan", ["plan", "-input=false", "-out=plan.bin"]),
            ("apply", ["apply", "-input=false", "plan.bin"]),
        ]
        for name, args in steps:
            started = time.monotonic()
            ws.terraform(*args)
            print(f"{name}: {time.monotonic() - started:.1f}s", file=sys.stderr)
        print(f"resources: {len(ws.state_resources())}", file=sys.stderr)
        print(json.dumps(ws.outputs(), indent=2))
        if keep:
            print(f"kept in {ws.directory}; moto stops now", file=sys.stderr)
            return 0
        started = time.monotonic()
        ws.terraform("destroy", "-auto-approve", "-input=false")
        print(f"destroy: {time.monotonic() - started:.1f}s", file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser(
        "serve", help="moto_server with the tag and event configuration stubs"
    )
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument("--port", type=int, default=5000)
    apply_command = commands.add_parser("apply", help="apply infra/ against moto, then destroy")
    apply_command.add_argument("--keep", action="store_true", help="skip the destroy")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port)
        return 0
    return apply_and_destroy(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
