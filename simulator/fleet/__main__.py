"""`python -m simulator.fleet ...`."""

from __future__ import annotations

import sys

from simulator.fleet.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m simulator.fleet"))
