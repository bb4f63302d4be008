#!/usr/bin/env python3
"""Build the processor Lambda package, `build/processor-lambda.zip`, reproducibly.

The zip holds the `processor/` package and the runtime libraries the Lambda imports that the
AWS Python runtime does not provide (it provides boto3): `ocpp`, `jsonschema` and their
dependencies, and `structlog`. Handler: `processor.aws_lambda.handler`.

By default the libraries are copied from the running environment (the versions the tests ran
with, no network needed); this requires the environment to match the Lambda runtime (Linux,
CPython of the target version, same CPU architecture: `rpds-py` is compiled). `--from-pypi`
instead installs those same versions for the target platform with `pip install --target`.

Entries are sorted and carry fixed timestamps and permissions, and the libraries' RECORD files
list only what the zip holds (not the environment's scripts, whose `#!` line names its path):
the same inputs give the same bytes in any folder, so the sha256 printed at the end only
changes when the code or a library does.

    .venv/bin/python scripts/build_lambda.py
    .venv/bin/python scripts/build_lambda.py --from-pypi --platform manylinux2014_aarch64
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import platform
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "build" / "processor-lambda.zip"
# What the Lambda imports beyond the standard library and boto3.
RUNTIME_REQUIREMENTS = ["ocpp", "structlog"]
# Provided by the Lambda runtime: never packaged even if something depends on them.
PROVIDED_BY_RUNTIME = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
}
Source = Path | bytes
"""A zip entry's content: a file to copy, or the bytes themselves."""
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
FILE_MODE = 0o644 << 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--from-pypi",
        action="store_true",
        help="pip install the libraries for --platform instead of copying them from this venv",
    )
    parser.add_argument("--platform", default="manylinux2014_x86_64", help="with --from-pypi")
    parser.add_argument("--python-version", default="3.11", help="the Lambda runtime's Python")
    return parser.parse_args()


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def runtime_distributions(roots: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions `roots` need at runtime, by canonical name, boto3 excluded."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(roots)
    while pending:
        name = canonical(pending.pop())
        if name in found or name in PROVIDED_BY_RUNTIME:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed: pip install -e '.[dev]' first") from None
        found[name] = distribution
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def installed_files(distribution: metadata.Distribution) -> Iterator[tuple[str, Path]]:
    """(path in the zip, file on disk) for one installed distribution, without caches/scripts."""
    for file in distribution.files or []:
        relative = file.as_posix()
        if relative.startswith("..") or "__pycache__" in relative or relative.endswith(".pyc"):
            continue
        path = Path(str(distribution.locate_file(file)))
        if path.is_file():
            yield relative, path


def with_portable_records(files: list[tuple[str, Source]]) -> list[tuple[str, Source]]:
    """`files` with each `*.dist-info/RECORD` listing only what the zip holds.

    As installed, a RECORD also lists the console scripts in the environment's `bin/`
    (`../../../bin/jsonschema`), whose hash covers a `#!` line naming the environment's path:
    kept, the zip would differ per checkout folder. Caches are not packaged either."""
    names = {name for name, _ in files}
    portable: list[tuple[str, Source]] = []
    for name, source in files:
        if name.endswith(".dist-info/RECORD"):
            text = source.decode() if isinstance(source, bytes) else source.read_text("utf-8")
            source = portable_record(text, names)
        portable.append((name, source))
    return portable


def portable_record(text: str, packaged: set[str]) -> bytes:
    """A RECORD (CSV: path, hash, size) with only the rows of files in `packaged`."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0] in packaged]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def package_files(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((root / package).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(root).as_posix(), path


def vendored_from_environment(python_version: str) -> list[tuple[str, Path]]:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != python_version or sys.platform != "linux":
        raise SystemExit(
            f"this environment is Python {running} on {sys.platform} ({platform.machine()}); "
            f"the Lambda runs Python {python_version} on Linux: use --from-pypi"
        )
    files = []
    for distribution in runtime_distributions(RUNTIME_REQUIREMENTS).values():
        files.extend(installed_files(distribution))
    return files


def installed_from_pypi(
    target: Path, platform_tag: str, python_version: str
) -> list[tuple[str, Path]]:
    """pip-install the exact versions of this environment for the Lambda's platform."""
    pins = [
        f"{d.metadata['Name']}=={d.version}"
        for d in runtime_distributions(RUNTIME_REQUIREMENTS).values()
    ]
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
            "--only-binary=:all:", "--implementation", "cp", "--platform", platform_tag,
            "--python-version", python_version, "--target", str(target), *sorted(pins),
        ],
        check=True,
    )  # fmt: skip
    return [
        (path.relative_to(target).as_posix(), path)
        for path in sorted(target.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.relative_to(target).parts[0] != "bin"
    ]


def write_zip(output: Path, files: Iterable[tuple[str, Source]]) -> None:
    entries = dict(files)  # a later duplicate path would replace an earlier one; none expected
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = FILE_MODE
            info.create_system = 3  # Unix, whatever system builds it
            info.compress_type = zipfile.ZIP_DEFLATED
            source = entries[name]
            content = source if isinstance(source, bytes) else source.read_bytes()
            archive.writestr(info, content, compresslevel=9)


def main() -> None:
    args = parse_args()
    files: list[tuple[str, Source]] = list(package_files(REPO_ROOT, "processor"))
    with tempfile.TemporaryDirectory(prefix="processor-lambda-") as scratch:
        if args.from_pypi:
            files += installed_from_pypi(Path(scratch), args.platform, args.python_version)
        else:
            files += vendored_from_environment(args.python_version)
        files = with_portable_records(files)
        write_zip(args.output, files)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    size_kib = args.output.stat().st_size / 1024
    print(f"{args.output}: {len(files)} files, {size_kib:.0f} KiB, sha256 {digest}")
    print("handler: processor.aws_lambda.handler")
    if not args.from_pypi:
        print(f"built for {sysconfig.get_platform()} CPython {args.python_version}")


if __name__ == "__main__":
    main()
