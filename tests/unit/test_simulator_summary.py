"""Fleet counters, the summary they become, its text and JSON forms, and the pass/fail rules."""

from __future__ import annotations

import json

from simulator.fleet.stats import (
    FleetStats,
    Summary,
    Thresholds,
    format_progress,
    format_summary,
    rate,
    summarize,
)


def busy_stats() -> FleetStats:
    stats = FleetStats(requested=4)
    for index in range(3):
        stats.dial_started(10.0 + index)
        stats.dial_succeeded(11.0 + index, 0.002 * (index + 1), reconnect=False)
    stats.dial_started(13.0)
    stats.dial_failed("http_400")
    stats.dial_started(13.5)
    stats.dial_succeeded(14.0, 0.001, reconnect=True)
    stats.disconnected("close_1012")
    for index in range(100):
        stats.call_sent(12.0 + index * 0.01)
        stats.call_answered(0.001 * (index + 1))
    stats.call_failed("timeout")
    stats.call_failed("callerror_InternalError")
    stats.call_failed("timeout")
    stats.boots_accepted = 3
    return stats


def test_counters_track_dials_and_connections() -> None:
    stats = busy_stats()
    assert stats.dialing == 0
    assert stats.connects_ok == 4
    assert stats.ever_connected == 3
    assert stats.reconnects == 1
    assert stats.connected_now == 3
    assert stats.connected_peak == 4


def test_summary_figures() -> None:
    summary = summarize(busy_stats(), started_at=10.0, now=22.0, cpu_s=1.5, max_rss_mb=42.0)
    assert summary.requested == 4
    assert summary.connected == 3
    assert summary.peak_connected == 4
    assert summary.connect_errors == {"http_400": 1}
    assert summary.connect_error_total == 1
    assert summary.connect_rate_per_s == rate(4, 10.0, 14.0) == 1.0
    assert summary.calls_ok == 100
    assert summary.calls_failed == 3
    assert summary.calls_failed_by_cause == {"callerror_InternalError": 1, "timeout": 2}
    assert summary.calls_per_s == 10.0  # 100 answers from the first call (t=12) to t=22
    assert summary.latency.p50_ms is not None
    assert 50.0 <= summary.latency.p50_ms <= 50.5
    assert 99.0 <= (summary.latency.p99_ms or 0) <= 100.0
    assert summary.latency.max_ms == 100.0
    assert summary.disconnects == {"close_1012": 1}
    assert summary.elapsed_s == 12.0


def test_rate_needs_a_span_and_a_count() -> None:
    assert rate(10, None, 5.0) is None
    assert rate(10, 5.0, 5.0) is None
    assert rate(0, 1.0, 5.0) is None
    assert rate(10, 1.0, 5.0) == 2.5


def test_json_form_round_trips_and_says_whether_it_passed() -> None:
    summary = summarize(busy_stats(), started_at=10.0, now=22.0)
    data = json.loads(json.dumps(summary.as_dict()))
    assert data["calls_failed"] == 3
    assert data["connect_errors"] == {"http_400": 1}
    assert data["latency"]["max_ms"] == 100.0
    assert data["passed"] is True
    assert data["threshold_failures"] == []
    assert set(data["latency"]) == {"p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"}


def test_text_form() -> None:
    text = format_summary(summarize(busy_stats(), started_at=10.0, now=22.0, cpu_s=1.25))
    assert "3 of 4 connected (peak 4 at once)" in text
    assert "connect errors  1 (http_400 1)" in text
    assert "100 ok, 3 failed (callerror_InternalError 1, timeout 2)" in text
    # Each percentile at most 1 % above the exact 50, 90 and 99 ms.
    assert "call latency    p50 50.3 ms, p90 90.5 ms, p99 100.0 ms, max 100 ms" in text
    assert "disconnects     close_1012 1; reconnects 1" in text
    assert "cpu 1.2 s" in text or "cpu 1.3 s" in text
    assert text.splitlines()[-1].strip() == "passed"


def test_empty_run_prints_dashes_not_errors() -> None:
    text = format_summary(summarize(FleetStats(requested=5), started_at=0.0, now=1.0))
    assert "0 of 5 connected" in text
    assert "call latency    p50 -, p90 -, p99 -, max -" in text


def thresholds_summary(**changes: object) -> Summary:
    summary = summarize(busy_stats(), started_at=10.0, now=22.0)
    return Summary(**{**summary.__dict__, **changes})


def test_thresholds_pass_when_within_limits() -> None:
    summary = thresholds_summary()
    limits = Thresholds(max_failed_calls=3, max_connect_errors=1, min_connected=3)
    assert limits.failures(summary) == ()


def test_each_threshold_says_what_failed() -> None:
    summary = thresholds_summary()
    failures = Thresholds(max_failed_calls=0, max_connect_errors=0, min_connected=4).failures(
        summary
    )
    assert failures == (
        "3 failed calls > --max-failed-calls 0",
        "1 connect errors > --max-connect-errors 0",
        "3 charge points connected < --min-connected 4",
    )
    failed = Summary(**{**summary.__dict__, "threshold_failures": failures})
    assert not failed.passed
    assert failed.as_dict()["passed"] is False
    assert "FAILED          3 failed calls > --max-failed-calls 0" in failed.text()


def test_a_run_where_nothing_connected_fails_without_any_threshold() -> None:
    summary = summarize(FleetStats(requested=2), started_at=0.0, now=1.0)
    assert Thresholds().failures(summary) == ("no charge point could connect",)


def test_progress_line() -> None:
    line = format_progress(busy_stats(), 12.34, 1234.5)
    assert line.startswith("[   12.3s] connected 3/4 dialing 0 connect errors 1")
    assert "calls 100 ok 3 failed 1,234/s" in line
    assert line.endswith("p99 100.0 ms")
