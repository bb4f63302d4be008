"""`python -m simulator`: the same command line as `simulate.py` and `ocpp-simulate`."""

from __future__ import annotations

import sys

from simulator.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m simulator"))
