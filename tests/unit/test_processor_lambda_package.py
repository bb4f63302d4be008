"""The Lambda zip: reproducible, complete without site-packages, nothing the runtime provides."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD = REPO_ROOT / "scripts" / "build_lambda.py"


def build(output: Path) -> Path:
    subprocess.run(
        [sys.executable, str(BUILD), "--output", str(output)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return output


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("lambda") / "processor-lambda.zip")


def test_the_same_inputs_give_the_same_bytes(package: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again.zip")
    assert (
        hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(package.read_bytes()).digest()
    )


def test_entries_are_sorted_with_fixed_times_and_no_caches(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    tops = {name.split("/")[0] for name in names}
    assert {"processor", "ocpp", "jsonschema", "referencing", "rpds", "structlog"} <= tops
    assert "processor/aws_lambda.py" in names
    assert "ocpp/v201/schemas/BootNotificationRequest.json" in names
    assert not tops & {"boto3", "botocore", "s3transfer", "pydantic", "aiomqtt", "gateway", "tests"}


def test_the_handler_module_works_from_the_package_alone(package: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        archive.extractall(tmp_path / "task")
    program = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import datetime, processor.aws_lambda\n"
        "from processor.answers import Inbound, respond\n"
        "from processor.aws_records import decode_body\n"
        'm = decode_body(\'{"message": [2, "b", "BootNotification", {"chargingStation": '
        '{"model": "M", "vendorName": "V"}, "reason": "PowerUp"}], '
        '"chargePointId": "CP1"}\')\n'
        "now = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)\n"
        "print(respond(Inbound(m.cp_id, m.frame, now, m.subprotocol), {}).reply)\n"
    )
    # -S -I: the standard library and the package only, as in a bare runtime without boto3.
    result = subprocess.run(
        [sys.executable, "-S", "-I", "-c", program, str(tmp_path / "task")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        '[3,"b",{"currentTime":"2024-05-01T00:00:00.000Z","interval":10,"status":"Accepted"}]'
    )


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_lambda", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_records_list_only_packaged_files() -> None:
    """A RECORD names the environment's console scripts, whose hash covers its path."""
    record = (
        "jsonschema/__init__.py,sha256=abc,10\n"
        "../../../bin/jsonschema,sha256=depends-on-the-venv-path,175\n"
        "jsonschema/__pycache__/__init__.cpython-311.pyc,,\n"
        "jsonschema-4.0.dist-info/RECORD,,\n"
    )
    packaged = {"jsonschema/__init__.py", "jsonschema-4.0.dist-info/RECORD"}
    assert load_build_script().portable_record(record, packaged) == (
        b"jsonschema/__init__.py,sha256=abc,10\njsonschema-4.0.dist-info/RECORD,,\n"
    )


def test_packaged_records_name_nothing_outside_the_zip(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        records = [name for name in names if name.endswith(".dist-info/RECORD")]
        assert records
        for record in records:
            rows = archive.read(record).decode().splitlines()
            assert {row.rsplit(",", 2)[0] for row in rows} <= names, record
