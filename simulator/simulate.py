"""Simulate an EV charge point from a checkout, with or without the package installed:

.venv/bin/python simulator/simulate.py --url ws://localhost:8080 --cp-id CP1
cd simulator && python3 simulate.py --url ws://localhost:8080 --cp-id CP1

Run by an interpreter that lacks the simulator's libraries (a fresh shell's `python3`), it
starts again with the checkout's `.venv/bin/python` when that exists (`make run` and
`make test` create it), so the AWS sample's way of running it works without activating
anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MISSING_PACKAGE_HINT = (
    "simulate.py: the Python package {name!r} is missing; run `make run` or `make install` in "
    "the repository root (they create .venv, which this script then uses), or install the "
    "simulator's dependencies with `pip install -r requirements.txt` (in this directory)"
)
REEXEC_MARKER = "OCPP_SIMULATE_REEXEC"
"""Set in the environment of the re-executed script, so it never loops."""


def checkout_venv_python() -> Path | None:
    """The repository's `.venv/bin/python`, unless it is missing or the running interpreter."""
    candidate = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    if not candidate.is_file() or os.environ.get(REEXEC_MARKER):
        return None
    if Path(sys.prefix).resolve() == candidate.parent.parent.resolve():
        return None
    return candidate


def reexec_with_checkout_venv() -> None:
    """Replace this process with the same command under the checkout's virtualenv, if any."""
    python = checkout_venv_python()
    if python is None:
        return
    os.environ[REEXEC_MARKER] = "1"
    os.execv(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


def _importable_package() -> None:
    """Make `import simulator` find the package this script belongs to, and never this
    directory's modules as top-level ones (they would shadow libraries)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or os.getcwd()).resolve() != here]
    try:
        import simulator

        found = simulator.__file__
    except ImportError:
        found = None
    if found is None or Path(found).resolve().parent != here:
        # Not installed, or installed from elsewhere: use the checkout around this script.
        sys.modules.pop("simulator", None)
        sys.path.insert(0, str(here.parent))


if __name__ == "__main__":
    _importable_package()
    try:
        from simulator.cli import main

        status = main()
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "simulator":
            raise
        reexec_with_checkout_venv()
        print(MISSING_PACKAGE_HINT.format(name=exc.name), file=sys.stderr)
        status = 2
    sys.exit(status)
