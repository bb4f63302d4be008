"""Fleet mode: thousands of charge points from one process, for load.

    python -m simulator.fleet --url ws://localhost:8080 --count 10000 --ramp 500 --duration 60

Each charge point is a lean OCPP-J client on `websockets` (BootNotification, then calls matched
to their answers by message id), far cheaper than the `ocpp` library's ChargePoint, so one
process holds 10,000 connections. The run ends with a summary (`--json` for machines).
"""
