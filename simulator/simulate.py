"""Simulate an EV charge point from a checkout, with or without the package installed:

cd simulator && python simulate.py --url ws://localhost:8080 --cp-id CP1
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MISSING_PACKAGE_HINT = (
    "simulate.py: the Python package {name!r} is missing; install the simulator's dependencies "
    "with `pip install -r requirements.txt` (in this directory) or the whole project with "
    "`pip install -e .` (in the repository root)"
)


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
        print(MISSING_PACKAGE_HINT.format(name=exc.name), file=sys.stderr)
        status = 2
    sys.exit(status)
