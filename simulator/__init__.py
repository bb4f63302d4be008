"""Charge point simulator and fleet load generator for the OCPP gateway.

One charge point, as the documented tool::

    cd simulator && python simulate.py --url ws://localhost:8080 --cp-id CP1

Many charge points from one process, for load::

    python simulate.py fleet --url ws://localhost:8080 --count 10000 --ramp 500 --duration 60

`simulator.cli.main` is the entry point of both (`ocpp-simulate`, `python -m simulator`);
`python -m simulator.fleet` runs the fleet directly.
"""
