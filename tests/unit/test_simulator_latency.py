"""Latency percentiles from the log-bucket histogram, against exact nearest-rank values."""

from __future__ import annotations

import math
import random

import pytest

from simulator.fleet.latency import (
    BUCKETS,
    LatencyHistogram,
    bucket_of,
    bucket_upper_edge,
    nearest_rank,
)


def exact_percentile(samples: list[float], percent: float) -> float:
    ordered = sorted(samples)
    return ordered[nearest_rank(percent, len(ordered)) - 1]


def test_nearest_rank() -> None:
    assert nearest_rank(50, 10) == 5
    assert nearest_rank(90, 10) == 9
    assert nearest_rank(99, 10) == 10
    assert nearest_rank(0, 10) == 1
    assert nearest_rank(100, 10) == 10
    assert nearest_rank(99, 1000) == 990
    assert nearest_rank(50, 1) == 1


@pytest.mark.parametrize("percent", [-1.0, 100.5])
def test_percentiles_outside_0_100_are_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        nearest_rank(percent, 10)


def test_empty_histogram_has_no_percentiles() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(50) is None
    assert histogram.mean is None
    assert histogram.count == 0


def test_single_sample_is_every_percentile() -> None:
    histogram = LatencyHistogram()
    histogram.record(0.0042)
    for percent in (0, 50, 99, 100):
        assert histogram.percentile(percent) == pytest.approx(0.0042)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_are_within_one_percent_above_the_exact_values(seed: int) -> None:
    generator = random.Random(seed)
    samples = [generator.lognormvariate(math.log(0.002), 1.2) for _ in range(20_000)]
    histogram = LatencyHistogram()
    for sample in samples:
        histogram.record(sample)
    for percent in (50, 90, 99, 99.9, 100):
        exact = exact_percentile(samples, percent)
        estimate = histogram.percentile(percent)
        assert estimate is not None
        assert exact * (1 - 1e-9) <= estimate <= exact * 1.01
    assert histogram.maximum == max(samples)
    assert histogram.mean == pytest.approx(sum(samples) / len(samples))


def test_percentile_never_exceeds_the_largest_sample() -> None:
    histogram = LatencyHistogram()
    for value in (0.001, 0.001, 0.001):
        histogram.record(value)
    assert histogram.percentile(100) == pytest.approx(0.001)


def test_extreme_values_land_in_the_end_buckets() -> None:
    assert bucket_of(0.0) == 0
    assert bucket_of(1e-9) == 0
    assert bucket_of(1e9) == BUCKETS - 1
    histogram = LatencyHistogram()
    histogram.record(5000.0)
    assert histogram.percentile(50) == 5000.0


def test_buckets_grow_by_one_percent_and_are_ordered() -> None:
    values = [1e-6 * 1.005**k for k in range(3000)]
    indexes = [bucket_of(v) for v in values]
    assert indexes == sorted(indexes)
    for value in values[1:]:
        edge = bucket_upper_edge(bucket_of(value))
        assert value * (1 - 1e-9) <= edge <= value * 1.0100001


def test_merge_equals_recording_everything_in_one() -> None:
    left, right, together = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for index in range(1, 1001):
        value = index / 10_000
        (left if index % 2 else right).record(value)
        together.record(value)
    left.merge(right)
    assert left.count == together.count == 1000
    for percent in (50, 90, 99):
        assert left.percentile(percent) == together.percentile(percent)
    assert left.maximum == together.maximum
    assert left.minimum == together.minimum
