"""What a fleet run counts while it runs, and the summary it ends with.

`FleetStats` is mutated by every charge point's coroutine (one thread, no locks); `summarize`
turns it into a `Summary`, which formats itself for people (`text`) and machines (`as_dict`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.fleet.latency import LatencyHistogram

PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class FleetStats:
    requested: int = 0
    dialing: int = 0
    connected_now: int = 0
    connected_peak: int = 0
    connects_ok: int = 0
    ever_connected: int = 0
    reconnects: int = 0
    connect_errors: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)
    calls_ok: int = 0
    calls_failed: Counter[str] = field(default_factory=Counter)
    boots_accepted: int = 0
    boots_not_accepted: int = 0
    csms_calls: int = 0
    unexpected_frames: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    connect_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_dial_at: float | None = None
    last_connect_at: float | None = None
    first_call_at: float | None = None

    def dial_started(self, now: float) -> None:
        self.dialing += 1
        if self.first_dial_at is None:
            self.first_dial_at = now

    def dial_failed(self, cause: str) -> None:
        self.dialing -= 1
        self.connect_errors[cause] += 1

    def dial_succeeded(self, now: float, seconds: float, reconnect: bool) -> None:
        """`reconnect`: this charge point had been connected before."""
        self.dialing -= 1
        self.connects_ok += 1
        if reconnect:
            self.reconnects += 1
        else:
            self.ever_connected += 1
        self.connected_now += 1
        self.connected_peak = max(self.connected_peak, self.connected_now)
        self.last_connect_at = now
        self.connect_latency.record(seconds)

    def disconnected(self, cause: str | None) -> None:
        """`cause` None: this side closed as planned (end of run, `--calls` reached)."""
        self.connected_now -= 1
        if cause is not None:
            self.disconnects[cause] += 1

    def call_sent(self, now: float) -> None:
        if self.first_call_at is None:
            self.first_call_at = now

    def call_answered(self, seconds: float) -> None:
        self.calls_ok += 1
        self.latency.record(seconds)

    def call_failed(self, cause: str) -> None:
        self.calls_failed[cause] += 1


@dataclass(frozen=True)
class LatencySummary:
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, histogram: LatencyHistogram) -> LatencySummary:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000.0, 3)

        p50, p90, p99 = (histogram.percentile(p) for p in PERCENTILES)
        maximum = histogram.maximum if histogram.count else None
        return cls(ms(p50), ms(p90), ms(p99), ms(maximum), ms(histogram.mean))


@dataclass(frozen=True)
class Summary:
    requested: int
    connected: int
    """Charge points that opened a connection at least once."""
    peak_connected: int
    connect_errors: dict[str, int]
    connect_error_total: int
    connect_rate_per_s: float | None
    connect_latency: LatencySummary
    calls_ok: int
    calls_failed: int
    calls_failed_by_cause: dict[str, int]
    calls_per_s: float | None
    latency: LatencySummary
    boots_accepted: int
    boots_not_accepted: int
    disconnects: dict[str, int]
    reconnects: int
    csms_calls: int
    unexpected_frames: int
    elapsed_s: float
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    threshold_failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.threshold_failures

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["threshold_failures"] = list(self.threshold_failures)
        data["passed"] = self.passed
        return data

    def text(self) -> str:
        return format_summary(self)


def rate(count: int, start: float | None, end: float | None) -> float | None:
    if start is None or end is None or end <= start or count == 0:
        return None
    return round(count / (end - start), 1)


def summarize(
    stats: FleetStats,
    *,
    started_at: float,
    now: float,
    cpu_s: float | None = None,
    max_rss_mb: float | None = None,
) -> Summary:
    return Summary(
        requested=stats.requested,
        connected=stats.ever_connected,
        peak_connected=stats.connected_peak,
        connect_errors=dict(sorted(stats.connect_errors.items())),
        connect_error_total=sum(stats.connect_errors.values()),
        connect_rate_per_s=rate(stats.connects_ok, stats.first_dial_at, stats.last_connect_at),
        connect_latency=LatencySummary.of(stats.connect_latency),
        calls_ok=stats.calls_ok,
        calls_failed=sum(stats.calls_failed.values()),
        calls_failed_by_cause=dict(sorted(stats.calls_failed.items())),
        calls_per_s=rate(stats.calls_ok, stats.first_call_at, now),
        latency=LatencySummary.of(stats.latency),
        boots_accepted=stats.boots_accepted,
        boots_not_accepted=stats.boots_not_accepted,
        disconnects=dict(sorted(stats.disconnects.items())),
        reconnects=stats.reconnects,
        csms_calls=stats.csms_calls,
        unexpected_frames=stats.unexpected_frames,
        elapsed_s=round(now - started_at, 3),
        cpu_s=cpu_s,
        max_rss_mb=max_rss_mb,
    )


@dataclass(frozen=True)
class Thresholds:
    """Limits a run must respect to pass (exit status 0); None means no limit."""

    max_failed_calls: int | None = None
    max_connect_errors: int | None = None
    min_connected: int | None = None

    def failures(self, summary: Summary) -> tuple[str, ...]:
        found = []
        if summary.connected == 0 and summary.requested > 0:
            found.append("no charge point could connect")
        if self.max_failed_calls is not None and summary.calls_failed > self.max_failed_calls:
            found.append(
                f"{summary.calls_failed} failed calls > --max-failed-calls {self.max_failed_calls}"
            )
        if (
            self.max_connect_errors is not None
            and summary.connect_error_total > self.max_connect_errors
        ):
            found.append(
                f"{summary.connect_error_total} connect errors > "
                f"--max-connect-errors {self.max_connect_errors}"
            )
        if self.min_connected is not None and summary.connected < self.min_connected:
            found.append(
                f"{summary.connected} charge points connected < --min-connected "
                f"{self.min_connected}"
            )
        return tuple(found)


def _number(value: float | None, unit: str = "") -> str:
    """Three significant digits or so: 1,234/s, 50.2 ms, 0.25 ms."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}" if abs(value) >= 10 else f"{value:.2f}{unit}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{cause} {count:,}" for cause, count in counts.items()) or "none"


def _latency(latency: LatencySummary) -> str:
    return (
        f"p50 {_number(latency.p50_ms, ' ms')}, p90 {_number(latency.p90_ms, ' ms')}, "
        f"p99 {_number(latency.p99_ms, ' ms')}, max {_number(latency.max_ms, ' ms')}"
    )


def format_summary(summary: Summary) -> str:
    lines = [
        "fleet summary",
        f"  charge points   {summary.connected:,} of {summary.requested:,} connected "
        f"(peak {summary.peak_connected:,} at once)",
        f"  connect errors  {summary.connect_error_total:,} ({_counts(summary.connect_errors)})",
        f"  connect rate    {_number(summary.connect_rate_per_s, '/s')}; "
        f"handshake {_latency(summary.connect_latency)}",
        f"  boots           {summary.boots_accepted:,} accepted, "
        f"{summary.boots_not_accepted:,} not accepted",
        f"  calls           {summary.calls_ok:,} ok, {summary.calls_failed:,} failed"
        + (f" ({_counts(summary.calls_failed_by_cause)})" if summary.calls_failed else ""),
        f"  call rate       {_number(summary.calls_per_s, '/s')}",
        f"  call latency    {_latency(summary.latency)}",
        f"  disconnects     {_counts(summary.disconnects)}; reconnects {summary.reconnects:,}",
        f"  elapsed         {summary.elapsed_s:.1f} s"
        + (f"; cpu {summary.cpu_s:.1f} s" if summary.cpu_s is not None else "")
        + (f"; max rss {summary.max_rss_mb:.0f} MB" if summary.max_rss_mb is not None else ""),
    ]
    if summary.csms_calls or summary.unexpected_frames:
        lines.append(
            f"  from the CSMS   {summary.csms_calls:,} requests answered NotImplemented, "
            f"{summary.unexpected_frames:,} unexpected frames"
        )
    if summary.threshold_failures:
        lines.append("  FAILED          " + "; ".join(summary.threshold_failures))
    else:
        lines.append("  passed")
    return "\n".join(lines)


def format_progress(stats: FleetStats, elapsed: float, calls_per_s: float | None) -> str:
    """One line for stderr while the run goes on."""
    p99 = stats.latency.percentile(99.0)
    return (
        f"[{elapsed:7.1f}s] connected {stats.connected_now:,}/{stats.requested:,}"
        f" dialing {stats.dialing:,} connect errors {sum(stats.connect_errors.values()):,}"
        f" | calls {stats.calls_ok:,} ok {sum(stats.calls_failed.values()):,} failed"
        f" {_number(calls_per_s, '/s')}"
        f" | p99 {_number(None if p99 is None else p99 * 1000.0, ' ms')}"
    )
