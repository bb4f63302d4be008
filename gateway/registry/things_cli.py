"""`ocpp-things`: register charge points in the local registry file, like `aws iot create-thing`.

    ocpp-things add CP2 [CP3 ...]     register ids; prints {"thingName": "CP2"} per id
    ocpp-things remove CP2 [...]      unregister ids
    ocpp-things list                  prints {"things": [{"thingName": "CP1"}, ...]}

The file is `--file PATH`, else `GATEWAY_REGISTRY_FILE` (environment or `.env`), else the
gateway's default. Comments and order are kept, and every change replaces the file atomically,
so a running gateway picks it up within a second and never sees half of it. Adding an id that is
already there, or removing one that is not, says so and succeeds.

Exit status: 0 done, 1 the file could not be read or written, 2 bad usage or invalid id.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.registry.ids import describe_invalid_cp_id, is_valid_cp_id
from gateway.registry.things_file import (
    NEW_FILE_HEADER,
    add_ids,
    listed_ids,
    parse_things,
    read_things,
    remove_ids,
    write_atomically,
)
from gateway.settings import Settings

PROG = "ocpp-things"
EXIT_OK = 0
EXIT_IO_ERROR = 1
EXIT_USAGE = 2


class _RegistryFileSetting(BaseSettings):
    """Only the registry file setting, so unrelated invalid settings cannot stop this command."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    registry_file: Path = Settings.model_fields["registry_file"].default


class UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    path: Path = args.file if args.file is not None else _RegistryFileSetting().registry_file
    try:
        if args.command == "add":
            return _add(path, args.cp_ids)
        if args.command == "remove":
            return _remove(path, args.cp_ids)
        return _list(path)
    except UsageError as exc:
        _say(f"{exc}; nothing was changed")
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as exc:
        _say(f"cannot use the registry file {path}: {exc}")
        return EXIT_IO_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Register charge point ids in the gateway's local registry file.",
        epilog="Exit status: 0 done, 1 file error, 2 bad usage or invalid id.",
    )
    parser.add_argument("--file", type=Path, default=None, help=_FILE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # `--file` is accepted after the command too; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--file", type=Path, default=argparse.SUPPRESS, help=_FILE_HELP)
    add = commands.add_parser("add", parents=[common], help="register charge point ids")
    add.add_argument("cp_ids", nargs="+", metavar="CP_ID")
    remove = commands.add_parser("remove", parents=[common], help="unregister charge point ids")
    remove.add_argument("cp_ids", nargs="+", metavar="CP_ID")
    commands.add_parser("list", parents=[common], help="list the registered charge point ids")
    return parser


_FILE_HELP = "registry file (default: $GATEWAY_REGISTRY_FILE, else the gateway's default)"


def _add(path: Path, cp_ids: list[str]) -> int:
    for cp_id in cp_ids:
        if not is_valid_cp_id(cp_id):
            raise UsageError(f"invalid charge point id {cp_id!r}: {describe_invalid_cp_id(cp_id)}")
    text = read_things(path)
    directory = path.resolve().parent
    if not directory.is_dir():
        raise FileNotFoundError(f"the directory {directory} does not exist")
    edit = add_ids(text or NEW_FILE_HEADER, cp_ids)
    if edit.changed:
        write_atomically(path, edit.text)
    for cp_id in edit.unchanged:
        _say(f"{cp_id} is already registered in {path}")
    for cp_id in dict.fromkeys(cp_ids):
        print(json.dumps({"thingName": cp_id}))
    return EXIT_OK


def _remove(path: Path, cp_ids: list[str]) -> int:
    edit = remove_ids(read_things(path), cp_ids)
    for cp_id in edit.unchanged:
        # Ids already in the file may be removed even when invalid (to clean up a bad line).
        if not is_valid_cp_id(cp_id):
            raise UsageError(f"invalid charge point id {cp_id!r}: {describe_invalid_cp_id(cp_id)}")
    if edit.changed:
        write_atomically(path, edit.text)
    for cp_id in edit.unchanged:
        _say(f"{cp_id} is not registered in {path}; nothing to remove")
    return EXIT_OK


def _list(path: Path) -> int:
    if not path.exists():
        _say(f"{path} does not exist yet: no charge point is registered")
    text = read_things(path)
    for problem in parse_things(text).problems:
        _say(
            f"{path}:{problem.line_number}: ignored by the gateway: {problem.reason} "
            f"(fix it, or `{PROG} remove` it)"
        )
    valid = [cp_id for cp_id in listed_ids(text) if is_valid_cp_id(cp_id)]
    print(json.dumps({"things": [{"thingName": cp_id} for cp_id in valid]}, indent=4))
    return EXIT_OK


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
