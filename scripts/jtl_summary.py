"""Text summary of a JMeter results file (.jtl, CSV with a header line).

    python scripts/jtl_summary.py build/jmeter/<run>/results.jtl

Prints one line per sampler label (count, errors, latency percentiles) and the first failure
messages; exits 1 when any sample failed, 2 when the file cannot be read.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_COLUMNS = ("label", "elapsed", "success")
FAILURES_SHOWN = 10


@dataclass
class LabelStats:
    label: str
    elapsed_ms: list[int] = field(default_factory=list)
    errors: int = 0

    @property
    def count(self) -> int:
        return len(self.elapsed_ms)


@dataclass
class Summary:
    labels: dict[str, LabelStats] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(stats.count for stats in self.labels.values())

    @property
    def errors(self) -> int:
        return sum(stats.errors for stats in self.labels.values())


def percentile(values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(rows: Iterable[dict[str, str]]) -> Summary:
    summary = Summary()
    for row in rows:
        stats = summary.labels.setdefault(row["label"], LabelStats(row["label"]))
        stats.elapsed_ms.append(int(row["elapsed"]))
        if row["success"].lower() != "true":
            stats.errors += 1
            message = row.get("failureMessage") or row.get("responseMessage") or "failed"
            summary.failures.append(f"{row['label']}: {message}")
    return summary


def read_jtl(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path} is not a CSV results file with a header (missing {', '.join(missing)}): "
                "run JMeter with -Jjmeter.save.saveservice.output_format=csv"
            )
        return list(reader)


def render(summary: Summary) -> str:
    lines = [f"{'label':<28}{'count':>8}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"]
    for stats in summary.labels.values():
        times = stats.elapsed_ms
        lines.append(
            f"{stats.label:<28}{stats.count:>8}{stats.errors:>8}"
            f"{percentile(times, 0.5):>9}{percentile(times, 0.95):>9}{max(times):>9}"
        )
    lines.append(f"total: {summary.samples} samples, {summary.errors} errors")
    lines.extend(f"  {failure}" for failure in summary.failures[:FAILURES_SHOWN])
    if len(summary.failures) > FAILURES_SHOWN:
        lines.append(f"  ... and {len(summary.failures) - FAILURES_SHOWN} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: jtl_summary.py RESULTS.jtl", file=sys.stderr)
        return 2
    try:
        rows = read_jtl(Path(args[0]))
    except (OSError, ValueError) as exc:
        print(f"jtl_summary: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"jtl_summary: {args[0]} holds no samples", file=sys.stderr)
        return 1
    summary = summarise(rows)
    print(render(summary))
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
