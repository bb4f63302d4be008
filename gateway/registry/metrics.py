"""The registry cache's counters as Prometheus metrics, read from its stats at each scrape.

    metrics.registry.register(RegistryCacheCollector(registry))

exports `ocpp_gateway_registry_cache_{hits,misses,lookups,shared,throttles,stale_answers,
errors,timeouts}_total` for a registry with `stats` (aws-iot, dynamodb), and nothing for the others.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from gateway.registry.cache import CacheStats

PREFIX = "ocpp_gateway_registry_cache_"

_COUNTERS = {
    "hits": "Registry answers served from an unexpired cache entry",
    "misses": "Registry questions that needed a lookup (their own or one already in flight)",
    "lookups": "Lookups made by the registry backend (DescribeThing, GetItem)",
    "shared": "Registry questions answered by a lookup already in flight for the same id",
    "throttles": "Throttled responses the registry backend received, each retry included",
    "stale_answers": "Registered answers from an expired entry, served while it is refreshed",
    "errors": "Registry lookups that failed (after the client's own retries)",
    "timeouts": "Handshakes that stopped waiting for a lookup after GATEWAY_REGISTRY_TIMEOUT",
}


def cache_stats_of(registry: object) -> CacheStats | None:
    """The registry's cache counters, or None for a registry that keeps none."""
    stats = getattr(registry, "stats", None)
    return stats if isinstance(stats, CacheStats) else None


class RegistryCacheCollector:
    """A prometheus_client collector over a registry's `stats` (a `CacheStats`)."""

    def __init__(self, registry: object) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        stats = cache_stats_of(self._registry)
        if stats is None:
            return
        for name, documentation in _COUNTERS.items():
            yield CounterMetricFamily(PREFIX + name, documentation, value=getattr(stats, name))
