"""The registry cache's counters in the gateway's Prometheus registry."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.observability import Metrics
from gateway.registry import StaticRegistry
from gateway.registry.cache import CacheStats
from gateway.registry.metrics import RegistryCacheCollector, cache_stats_of
from gateway.registry.mirrored import MirrorStats


class CachingRegistry:
    def __init__(self) -> None:
        self.stats = CacheStats()


def exported(metrics: Metrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name.startswith("ocpp_gateway_registry_cache_")
    }


def test_every_counter_is_exported_with_its_current_value() -> None:
    registry = CachingRegistry()
    metrics = Metrics()
    metrics.registry.register(RegistryCacheCollector(registry))
    registry.stats.hits, registry.stats.misses, registry.stats.throttles = 7, 3, 2
    registry.stats.stale_answers = 1
    assert exported(metrics) == {
        "ocpp_gateway_registry_cache_hits_total": 7.0,
        "ocpp_gateway_registry_cache_misses_total": 3.0,
        "ocpp_gateway_registry_cache_lookups_total": 0.0,
        "ocpp_gateway_registry_cache_shared_total": 0.0,
        "ocpp_gateway_registry_cache_throttles_total": 2.0,
        "ocpp_gateway_registry_cache_stale_answers_total": 1.0,
        "ocpp_gateway_registry_cache_errors_total": 0.0,
        "ocpp_gateway_registry_cache_timeouts_total": 0.0,
    }
    registry.stats.hits += 1
    assert exported(metrics)["ocpp_gateway_registry_cache_hits_total"] == 8.0  # read at scrape


def test_a_registry_without_stats_exports_nothing() -> None:
    metrics = Metrics()
    metrics.registry.register(RegistryCacheCollector(StaticRegistry(["CP1"])))
    assert exported(metrics) == {}
    assert "ocpp_gateway_handshakes" in metrics.render().decode()


def test_only_cache_stats_count_as_stats() -> None:
    class Odd:
        stats = {"hits": 1}

    assert cache_stats_of(Odd()) is None
    assert cache_stats_of(CachingRegistry()) is not None


def test_the_mirror_counters_and_gauges_are_exported() -> None:
    class Mirrored(CachingRegistry):
        def __init__(self) -> None:
            super().__init__()
            self.mirror_stats = MirrorStats(hits=5, misses=2, syncs=1, pages=3, ids=700)

    registry = Mirrored()
    metrics = Metrics()
    metrics.registry.register(RegistryCacheCollector(registry))
    text = metrics.render().decode()
    figures = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("ocpp_gateway_registry_mirror_")
    }
    assert figures["ocpp_gateway_registry_mirror_hits_total"] == 5.0
    assert figures["ocpp_gateway_registry_mirror_pages_total"] == 3.0
    assert figures["ocpp_gateway_registry_mirror_ids"] == 700.0
    assert figures["ocpp_gateway_registry_mirror_loaded"] == 0.0
