"""The registry cache's counters as Prometheus metrics, read from its stats at each scrape.

    metrics.registry.register(RegistryCacheCollector(registry))

exports `ocpp_gateway_registry_cache_{hits,misses,lookups,shared,throttles,stale_answers,
errors,timeouts}_total` for a registry with `stats` (aws-iot, dynamodb), and nothing for the others;
and for a registry with `mirror_stats` (`MirroredRegistry`) `ocpp_gateway_registry_mirror_{hits,
misses,syncs,pages,page_errors}_total` and the gauges `ocpp_gateway_registry_mirror_{ids,loaded,
last_sync_seconds}`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from gateway.registry.cache import CacheStats
from gateway.registry.mirrored import MirrorStats

PREFIX = "ocpp_gateway_registry_cache_"
MIRROR_PREFIX = "ocpp_gateway_registry_mirror_"

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
_MIRROR_COUNTERS = {
    "hits": "Registry answers from the mirror of every registered id (no AWS call)",
    "misses": "Registry questions about ids the mirror does not hold, passed to a per-id lookup",
    "syncs": "Complete reads of the registry into the mirror",
    "pages": "Pages read into the mirror (ListThings, Scan)",
    "page_errors": "Pages that failed and were asked again after a back-off",
}
_MIRROR_GAUGES = {
    "ids": "Registered ids the mirror holds",
    "loaded": "1 once the first complete read of the registry is done",
    "last_sync_seconds": "Seconds the last complete read of the registry took",
}


def cache_stats_of(registry: object) -> CacheStats | None:
    """The registry's cache counters, or None for a registry that keeps none."""
    stats = getattr(registry, "stats", None)
    return stats if isinstance(stats, CacheStats) else None


def mirror_stats_of(registry: object) -> MirrorStats | None:
    stats = getattr(registry, "mirror_stats", None)
    return stats if isinstance(stats, MirrorStats) else None


class RegistryCacheCollector:
    """A prometheus_client collector over a registry's `stats` (a `CacheStats`) and
    `mirror_stats` (a `MirrorStats`), each when present."""

    def __init__(self, registry: object) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        stats = cache_stats_of(self._registry)
        if stats is not None:
            for name, documentation in _COUNTERS.items():
                yield CounterMetricFamily(PREFIX + name, documentation, value=getattr(stats, name))
        mirror = mirror_stats_of(self._registry)
        if mirror is not None:
            for name, documentation in _MIRROR_COUNTERS.items():
                value = getattr(mirror, name)
                yield CounterMetricFamily(MIRROR_PREFIX + name, documentation, value=value)
            for name, documentation in _MIRROR_GAUGES.items():
                value = float(getattr(mirror, name))
                yield GaugeMetricFamily(MIRROR_PREFIX + name, documentation, value=value)
