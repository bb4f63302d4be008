"""`ocpp-things`: register charge points in the local registry file, like `aws iot create-thing`.

    ocpp-things add CP2 [CP3 ...]     register ids; prints {"thingName": "CP2"} per id
    ocpp-things remove CP2 [...]      unregister ids
    ocpp-things list                  prints {"things": [{"thingName": "CP1"}, ...]}
    ocpp-things password CP1          set CP1's HTTP Basic password (security profiles 1, 2)
    ocpp-things password --remove CP1 remove it

The password is asked twice on a terminal, else read as one line from standard input; it is
never taken from the command line. It must have at least 16 characters (OCPP 2.0.1's
`BasicAuthPassword` has 16 to 40), unless `--force` is given; it is stored hashed (salted SHA-256,
or salted scrypt for a shorter one) in the password file:
`--password-file PATH`, else `GATEWAY_PASSWORD_FILE`. A running gateway picks the change up
within a second.

The file is `--file PATH`, else `GATEWAY_REGISTRY_FILE` (environment or `.env`), else the
checkout's `config/things.txt` (the file `make run` uses) when run anywhere inside the
repository, else the gateway's default (`things.txt` in the current directory). Comments and
order are kept, and every change replaces the file atomically, so a running gateway picks it up
within a second and never sees half of it. Adding an id that is already there, or removing one
that is not, says so and succeeds.

Exit status: 0 done, 1 the file could not be read or written, 2 bad usage or invalid id.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
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
from gateway.security import (
    MIN_FAST_LENGTH,
    hash_password,
    remove_password_line,
    set_password_line,
)
from gateway.settings import Settings

PROG = "ocpp-things"
EXIT_OK = 0
EXIT_IO_ERROR = 1
EXIT_USAGE = 2
CHECKOUT_REGISTRY_FILE = Path("config") / "things.txt"
"""The file `make run` hands the gateway, relative to the repository root."""


class _RegistryFileSetting(BaseSettings):
    """Only the registry file setting, so unrelated invalid settings cannot stop this command."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    registry_file: Path | None = None


class _PasswordFileSetting(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    password_file: Path | None = None


class UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "password":
        return _password_command(args)
    path: Path = args.file if args.file is not None else default_registry_file()
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


def default_registry_file(start: Path | None = None) -> Path:
    """The registry file when `--file` is not given: the setting, else the checkout's file.

    A newcomer runs `ocpp-things add CP2` from somewhere in the repository; writing a new
    `things.txt` there would register CP2 in a file the local stack never reads."""
    configured = _RegistryFileSetting().registry_file
    if configured is not None:
        return configured
    checkout_file = find_checkout_registry(start or Path.cwd())
    if checkout_file is not None:
        return checkout_file
    default: Path = Settings.model_fields["registry_file"].default
    return default


def find_checkout_registry(start: Path) -> Path | None:
    """`config/things.txt` of the repository holding `start` (walking up to its root), if any."""
    for directory in (start, *start.parents):
        candidate = directory / CHECKOUT_REGISTRY_FILE
        if (directory / "pyproject.toml").is_file() and candidate.is_file():
            return candidate
    return None


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
    password = commands.add_parser(
        "password",
        help="set (or --remove) a charge point's HTTP Basic password, read from a prompt or stdin",
        description="Set a charge point's HTTP Basic password (OCPP security profiles 1 and 2): "
        "asked twice on a terminal, else read as one line from standard input. It is stored "
        "hashed in the password file.",
    )
    password.add_argument("cp_id", metavar="CP_ID")
    password.add_argument("--remove", action="store_true", help="remove the password instead")
    password.add_argument(
        "--force",
        action="store_true",
        help=f"accept a password shorter than {MIN_FAST_LENGTH} characters (hashed with scrypt)",
    )
    password.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="password file (default: $GATEWAY_PASSWORD_FILE)",
    )
    return parser


_FILE_HELP = (
    "registry file (default: $GATEWAY_REGISTRY_FILE, else config/things.txt of the repository "
    "around the current directory, else ./things.txt)"
)


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


def _password_command(args: argparse.Namespace) -> int:
    path: Path | None = args.password_file or _PasswordFileSetting().password_file
    try:
        if path is None:
            raise UsageError("no password file: pass --password-file or set GATEWAY_PASSWORD_FILE")
        if args.remove:
            return _remove_password(path, args.cp_id)
        return _set_password(path, args.cp_id, force=args.force)
    except UsageError as exc:
        _say(f"{exc}; nothing was changed")
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as exc:
        _say(f"cannot use the password file {path}: {exc}")
        return EXIT_IO_ERROR


def _set_password(path: Path, cp_id: str, *, force: bool = False) -> int:
    if not is_valid_cp_id(cp_id):
        raise UsageError(f"invalid charge point id {cp_id!r}: {describe_invalid_cp_id(cp_id)}")
    directory = path.resolve().parent
    if not directory.is_dir():
        raise FileNotFoundError(f"the directory {directory} does not exist")
    text = read_things(path)  # fails before the prompt if the file cannot be read
    password = _read_password(cp_id)
    if len(password) < MIN_FAST_LENGTH and not force:
        raise UsageError(
            f"the password has {len(password)} characters; OCPP 2.0.1 passwords have "
            f"{MIN_FAST_LENGTH} to 40: use a longer one, or pass --force to store it anyway"
        )
    if not path.exists():
        # A new file is readable by its owner only; an existing one keeps its permissions.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    write_atomically(path, set_password_line(text, cp_id, hash_password(password.encode())))
    _say(f"the password of {cp_id} is set in {path}")
    return EXIT_OK


def _remove_password(path: Path, cp_id: str) -> int:
    text, removed = remove_password_line(read_things(path), cp_id)
    if removed:
        write_atomically(path, text)
        _say(f"the password of {cp_id} is removed from {path}")
    else:
        _say(f"{cp_id} has no password in {path}; nothing to remove")
    return EXIT_OK


def _read_password(cp_id: str) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {cp_id}: ")
        if password and getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise UsageError("the password is empty")
    return password


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
