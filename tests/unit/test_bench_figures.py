"""The benchmark's CPU figures: shares of one core, the machine's busy share, the bound."""

from __future__ import annotations

import pytest

from bench.run import (
    Sample,
    Tick,
    bound_calls_per_s,
    busiest,
    cpu_figures,
    machine_ticks,
    parse_progress,
    percent,
    steady_us_per_call,
    table,
)
from simulator.fleet.stats import FleetStats, format_progress


def test_machine_ticks_count_idle_and_iowait_as_not_busy() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    assert machine_ticks("cpu  100 5 20 800 50 3 2 1 40 0") == (131, 981)


def test_percent_of_a_whole_and_of_nothing() -> None:
    assert percent(1.5, 2.0) == 75.0
    assert percent(2.0, 1.0) == 200.0
    assert percent(1.0, 0.0) == 0.0


def test_bound_is_the_cores_divided_by_the_cost_of_a_call() -> None:
    assert bound_calls_per_s(250.0, cores=2) == 8000
    assert bound_calls_per_s(300.0, cores=2) == 6667
    assert bound_calls_per_s(None, cores=2) is None
    assert bound_calls_per_s(0.0, cores=2) is None


def test_busiest_names_the_process_with_the_largest_share() -> None:
    assert busiest({"fleet": 31.0, "gateway": 98.6, "mosquitto": 22.1}) == "gateway 99%"
    assert busiest({}) == ""
    assert busiest(None) == ""


def test_figures_over_the_load_between_two_samples() -> None:
    before = Sample(
        at=100.0,
        machine=(1_000, 5_000),
        cpu_s={"gateway": 10.0, "mosquitto": 3.0, "responder": 1.0},
    )
    after = Sample(
        at=104.0,
        machine=(1_720, 5_800),
        cpu_s={"gateway": 13.9, "mosquitto": 4.0, "responder": 1.5},
    )
    figures = cpu_figures(before, after, 10_000, "gateway", {"fleet": 1.5})
    assert figures["cpu_percent"] == {
        "fleet": 37.5,
        "gateway": 97.5,
        "mosquitto": 25.0,
        "responder": 12.5,
    }
    assert list(figures["cpu_percent"]) == ["fleet", "gateway", "mosquitto", "responder"]
    assert figures["machine_busy_percent"] == 90.0
    # (1.5 + 1.0 + 0.5) s over 10,000 calls
    assert figures["other_us_per_call"] == pytest.approx(300.0)
    assert figures["bound_calls_per_s"] == bound_calls_per_s(300.0)


def test_figures_without_a_server_count_every_process() -> None:
    before = Sample(at=0.0, machine=(0, 0), cpu_s={"mosquitto": 0.0})
    after = Sample(at=2.0, machine=(300, 400), cpu_s={"mosquitto": 1.0})
    figures = cpu_figures(before, after, 4_000, None, {"mqtt_ceiling": 1.0})
    assert figures["cpu_percent"] == {"mqtt_ceiling": 50.0, "mosquitto": 50.0}
    assert figures["machine_busy_percent"] == 75.0
    assert figures["other_us_per_call"] == 500.0


def test_figures_without_calls_have_no_cost_per_call_nor_bound() -> None:
    before = Sample(at=0.0, machine=(0, 100), cpu_s={"echo": 0.0})
    after = Sample(at=1.0, machine=(50, 200), cpu_s={"echo": 0.2})
    figures = cpu_figures(before, after, 0, "echo", {"fleet": 0.1})
    assert figures["other_us_per_call"] is None
    assert figures["bound_calls_per_s"] is None


def test_the_table_sets_each_row_beside_the_websocket_only_server() -> None:
    ceiling = {"run": "ceiling-websocket", "cps": 1000, "calls_per_s": 10000.0}
    gateway = {"run": "gateway-shared-awscrt", "phase": "calls", "cps": 1000}
    rows = [
        {**ceiling, "cpu_ms_per_1000_calls": 40.0},
        {**gateway, "calls_per_s": 3000.0, "cpu_ms_per_1000_calls": 120.0},
    ]
    ceiling_line, gateway_line = table(rows).splitlines()[2:]
    # calls/s, its share of the ceiling's, CPU per call, and that as a multiple of the ceiling's
    assert gateway_line.split()[3:7] == ["3000.0", "0.30", "120.0", "3.00"]
    assert ceiling_line.split()[1:] == ["1000", "10000.0", "40.0"]


def test_a_fleet_progress_line_gives_connected_requested_and_calls() -> None:
    stats = FleetStats(requested=1_000)
    stats.connected_now = 998
    stats.calls_ok = 12_345
    line = format_progress(stats, 3.0, 4_100.0)
    assert parse_progress(line) == (998, 1_000, 12_345)
    assert parse_progress("Traceback (most recent call last):") is None


def test_cpu_per_call_counts_only_while_every_cp_is_connected() -> None:
    ticks = [
        Tick(400, 1_000, 0, 1.0),  # handshakes: expensive, left out
        Tick(1_000, 1_000, 2_000, 3.0),  # the last ones may still open their channel
        Tick(1_000, 1_000, 5_000, 3.5),
        Tick(1_000, 1_000, 9_000, 3.9),
        Tick(1_000, 1_000, 13_000, 4.3),
        Tick(200, 1_000, 13_500, 5.0),  # closing
    ]
    assert steady_us_per_call(ticks) == 100.0  # 0.8 s over 8,000 calls


def test_no_cpu_per_call_without_a_steady_window() -> None:
    assert steady_us_per_call([]) is None
    assert steady_us_per_call([Tick(10, 10, 5, 1.0), Tick(10, 10, 9, 1.1)]) is None
    assert steady_us_per_call([Tick(0, 0, 0, 1.0)] * 4) is None
    stuck = [Tick(10, 10, 7, 1.0), Tick(10, 10, 9, 1.1), Tick(10, 10, 9, 1.2)]
    assert steady_us_per_call(stuck) is None
