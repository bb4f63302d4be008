"""infra/ checked offline: fmt, init from the local provider mirror, validate, checkov and
`terraform test` with a mocked provider. The apply against moto_server is in
tests/integration/test_deploy_terraform_moto.py."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scripts import tf_moto
from scripts.deploy_tools import REPO_ROOT, find_tool

INFRA = REPO_ROOT / "infra"
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z0-9_]+)(?::(.*))?")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tf_moto.Workspace:
    ws = tf_moto.workspace(tmp_path_factory.mktemp("infra"))
    ws.terraform("init", "-input=false", "-backend=false", "-lockfile=readonly")
    return ws


def test_the_provider_lock_is_committed_and_matches_the_constraint() -> None:
    lock = (INFRA / ".terraform.lock.hcl").read_text()
    version = re.search(
        r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"([\d.]+)"', lock
    )
    assert version is not None, lock
    constraint = re.search(r'version\s*=\s*"~> ([\d.]+)"', (INFRA / "versions.tf").read_text())
    assert constraint is not None
    assert version.group(1).startswith(constraint.group(1).rsplit(".", 1)[0] + ".")
    assert re.search(r'"h1:[A-Za-z0-9+/=]+"', lock)
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "infra/.terraform.lock.hcl"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    assert tracked.returncode == 0, "commit infra/.terraform.lock.hcl"


@pytest.mark.parametrize(
    "path", ["infra/terraform.tfvars", "infra/prod.auto.tfvars", "infra/.terraform/x"]
)
def test_local_terraform_settings_and_state_are_not_committed(path: str) -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", path], cwd=REPO_ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 0, f"{path} must be git-ignored"


def test_the_variables_example_is_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "infra/terraform.tfvars.example"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    assert ignored.returncode == 1


def test_terraform_files_are_formatted() -> None:
    result = subprocess.run(
        [tf_moto.terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra`:\n{result.stdout}"


def test_configuration_is_valid(workspace: tf_moto.Workspace) -> None:
    result = workspace.terraform("validate", "-json")
    report = json.loads(result.stdout)
    assert report["valid"] is True, report
    assert report["warning_count"] == 0, report["diagnostics"]


def test_plan_assertions_with_a_mocked_provider(workspace: tf_moto.Workspace) -> None:
    zip_path = json.loads((workspace.directory / "test.auto.tfvars.json").read_text())
    result = workspace.terraform("test", f"-var=processor_zip={zip_path['processor_zip']}")
    assert "0 failed" in result.stdout, result.stdout
    assert re.search(r"Success! [1-9]\d* passed", result.stdout), result.stdout


def run_checkov(*args: str) -> dict[str, Any]:
    """checkov with the repository's .checkov.yaml; its JSON report."""
    command = [str(find_tool("checkov")), "--config-file", ".checkov.yaml", *args, "-o", "json"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON report:\n{result.stdout}\n{result.stderr}")
    return report


def test_checkov_finds_nothing_unjustified() -> None:
    report = run_checkov("-d", "infra", "--framework", "terraform")
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "fix these or skip them next to the resource with a reason:\n" + "\n".join(
        failed
    )
    assert report["summary"]["passed"] > 100


def test_checkov_passes_the_dockerfile() -> None:
    report = run_checkov("-f", "Dockerfile", "--framework", "dockerfile")
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]


def test_every_checkov_skip_gives_a_reason() -> None:
    skips = [
        (path.name, match.group(1), (match.group(2) or "").strip())
        for path in INFRA.rglob("*.tf")
        for match in SKIP_COMMENT.finditer(path.read_text())
    ]
    assert skips, "expected the justified skips in infra/"
    unexplained = [f"{name}: {check}" for name, check, reason in skips if len(reason) < 20]
    assert not unexplained, unexplained


def declared_variables() -> dict[str, str]:
    """{name: description} of infra/variables.tf."""
    text = (INFRA / "variables.tf").read_text()
    blocks = re.split(r'^variable "', text, flags=re.MULTILINE)[1:]
    declared = {}
    for block in blocks:
        name = block.split('"', 1)[0]
        description = re.search(r'^\s*description\s*=\s*"(.*)"$', block, re.MULTILINE)
        declared[name] = description.group(1) if description else ""
    return declared


def test_every_variable_is_described() -> None:
    undescribed = [name for name, text in declared_variables().items() if len(text) < 10]
    assert not undescribed, undescribed


def test_tfvars_example_sets_only_declared_variables() -> None:
    example = (INFRA / "terraform.tfvars.example").read_text()
    assigned = set(re.findall(r"^#?\s*([a-z_]+)\s*=", example, re.MULTILINE))
    unknown = assigned - set(declared_variables())
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {unknown}"
    assert {"image_tag", "things", "certificate_arn", "cpu_target_percent"} <= assigned


def test_outputs_include_the_websocket_url_and_iot_endpoint() -> None:
    outputs = set(re.findall(r'^output "([a-z_]+)"', (INFRA / "outputs.tf").read_text(), re.M))
    assert {"websocket_url", "iot_endpoint"} <= outputs


def test_provider_override_points_every_service_at_the_endpoint() -> None:
    hcl = tf_moto.provider_override("http://127.0.0.1:5555")
    for service in tf_moto.SERVICES:
        assert f'{service} = "http://127.0.0.1:5555"' in hcl
    assert "skip_credentials_validation = true" in hcl
    assert "max_retries                 = 2" in hcl


def test_services_cover_every_resource_type_in_infra() -> None:
    prefixes = {
        "acm": "acm",
        "appautoscaling": "applicationautoscaling",
        "cloudwatch_log": "cloudwatchlogs",
        "default_security_group": "ec2",
        "ecr": "ecr",
        "ecs": "ecs",
        "eip": "ec2",
        "flow_log": "ec2",
        "iam": "iam",
        "internet_gateway": "ec2",
        "iot": "iot",
        "kms": "kms",
        "lambda": "lambda",
        "lb": "elbv2",
        "nat_gateway": "ec2",
        "route53": "route53",
        "route_table": "ec2",
        "security_group": "ec2",
        "sqs": "sqs",
        "subnet": "ec2",
        "vpc": "ec2",
    }
    types = {
        match
        for path in INFRA.glob("*.tf")
        for match in re.findall(r'^resource "aws_([a-z0-9_]+)"', path.read_text(), re.M)
    }
    for resource_type in types:
        prefix = max((p for p in prefixes if resource_type.startswith(p)), key=len, default=None)
        assert prefix is not None, f"aws_{resource_type}: which endpoint serves it?"
        assert prefixes[prefix] in tf_moto.SERVICES


def test_placeholder_lambda_zip_is_reproducible(tmp_path: Path) -> None:
    first = tf_moto.placeholder_lambda_zip(tmp_path / "a.zip").read_bytes()
    second = tf_moto.placeholder_lambda_zip(tmp_path / "b.zip").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert "processor/aws_lambda.py" in archive.namelist()


def test_missing_provider_mirror_is_reported_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tf_moto, "PLUGIN_MIRROR", tmp_path / "empty-mirror")
    with pytest.raises(RuntimeError, match="TF_PLUGIN_MIRROR"):
        tf_moto.workspace(tmp_path)


def test_cli_config_installs_only_from_the_mirror(tmp_path: Path) -> None:
    text = tf_moto.cli_config(tmp_path)
    assert f'path    = "{tmp_path}"' in text
    assert 'exclude = ["registry.terraform.io/*/*"]' in text
