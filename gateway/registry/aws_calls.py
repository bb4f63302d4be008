"""What the AWS-backed registries share: boto3 clients called from asyncio, kept fleet-friendly.

- Adaptive retry (botocore's `retries={"mode": "adaptive"}`): on throttling the client retries
  with exponential back-off and also slows itself down (a client-side token bucket whose rate
  follows the throttling it meets), so a reconnecting fleet does not keep hammering the
  control plane.
- A thread pool of its own with `max_concurrency` threads: the event loop never blocks, and at
  most that many lookups (waiting for the rate limiter included) are under way at once; the
  mirror's listing has one more thread of its own.
- Every throttled response, retries included, is counted in the cache's `stats.throttles`.
- Short timeouts: a charge point's handshake waits for the answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Generic, TypeVar, cast

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, NoRegionError
from botocore.retries.standard import RetryEventAdapter, ThrottlingErrorDetector

from gateway.registry.base import RegistryMisconfigured
from gateway.registry.cache import CacheStats, RegistryCache
from gateway.registry.mirrored import PageToken

T = TypeVar("T")
A = TypeVar("A")

DEFAULT_MAX_CONCURRENCY = 16
# Three attempts, the first included: the two retries wait up to 1 s then 2 s (botocore's
# back-off), which keeps a throttled lookup well inside a handshake's 10 s.
DEFAULT_MAX_ATTEMPTS = 3
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 4.0


def client_config(*, max_concurrency: int, max_attempts: int) -> Config:
    """botocore settings for registry lookups: adaptive retry, short timeouts."""
    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        max_pool_connections=max_concurrency + 1,  # + the listing's own thread
    )


def make_client(
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    config: Config,
    backend: str,
) -> BaseClient:
    """A boto3 client; raises `RegistryMisconfigured` saying which setting to fix."""
    try:
        client: BaseClient = boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name=region,
            endpoint_url=endpoint_url,
            config=config,
        )
    except NoRegionError:
        raise RegistryMisconfigured(
            f"the {backend} registry needs an AWS region: set AWS_REGION (e.g. eu-west-1)"
        ) from None
    except ValueError as exc:
        raise RegistryMisconfigured(
            f"the {backend} registry cannot use endpoint {endpoint_url!r}: {exc}; "
            "check GATEWAY_AWS_ENDPOINT_URL"
        ) from None
    return client


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class AwsCalls:
    """Blocking boto3 calls run from asyncio on a pool of `max_concurrency` threads."""

    def __init__(self, name: str, max_concurrency: int, stats: CacheStats) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.name = name
        self.max_concurrency = max_concurrency
        self._stats = stats
        self._stats_lock = threading.Lock()
        self._throttling = ThrottlingErrorDetector(retry_event_adapter=RetryEventAdapter())
        self._executor: ThreadPoolExecutor | None = None
        # Listing pages (the mirror) on a thread of their own: a cold start's thousands of
        # per-id lookups must not queue in front of the read that makes them unnecessary.
        self._listing: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix=f"registry-{self.name}"
        )

    def count_throttles(self, client: BaseClient) -> None:
        """Count every throttled response `client` receives, as the adaptive limiter sees it."""
        # `needs-retry` is emitted after every attempt, whether or not it is then retried.
        client.meta.events.register("needs-retry", self._on_response)

    async def run(self, call: Callable[[A], T], argument: A, *, listing: bool = False) -> T:
        """`call(argument)` on the pool; `listing`: on the listing's own thread instead."""
        if self._executor is None:
            raise RuntimeError(
                f"the {self.name} registry is not started: call `await start()` first"
            )
        loop = asyncio.get_running_loop()
        if listing:
            if self._listing is None:
                self._listing = ThreadPoolExecutor(
                    1, thread_name_prefix=f"registry-{self.name}-list"
                )
            return await loop.run_in_executor(self._listing, call, argument)
        return await loop.run_in_executor(self._executor, call, argument)

    def close(self) -> None:
        for executor in (self._executor, self._listing):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._listing = None

    def _on_response(self, **kwargs: Any) -> None:
        if self._throttling.is_throttling_error(**kwargs):
            with self._stats_lock:  # called from the pool's threads
                self._stats.throttles += 1


ClientT = TypeVar("ClientT", bound=BaseClient)


class CachedAwsRegistry(Generic[ClientT]):
    """The common part of the AWS-backed registries: one boto3 client, `AwsCalls`, a cache.

    A subclass names its AWS service and answers one id with `_lookup_blocking`, which runs on
    the calls' thread pool and raises `RegistryUnavailable` when AWS cannot answer.
    """

    service: ClassVar[str]  # boto3's service name, e.g. "iot"
    backend: ClassVar[str]  # the `GATEWAY_REGISTRY` value, e.g. "aws-iot"
    loaded = True  # each id is looked up when asked: nothing to read first

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        positive_ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        lookup_timeout: float | None = None,
        client: ClientT | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`client` is built at `start()` from `region` and `endpoint_url` unless one is given."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.region = region
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self._client = client
        self.cache: RegistryCache[str] = RegistryCache(
            self._lookup,
            positive_ttl=positive_ttl,
            negative_ttl=negative_ttl,
            clock=clock,
            lookup_timeout=lookup_timeout,
        )
        self._calls = AwsCalls(self.backend, max_concurrency, self.cache.stats)

    @property
    def max_concurrency(self) -> int:
        return self._calls.max_concurrency

    @property
    def stats(self) -> CacheStats:
        """Hits, misses, lookups, throttles, stale answers and errors, for metrics."""
        return self.cache.stats

    @property
    def client(self) -> ClientT:
        if self._client is None:
            raise RuntimeError(
                f"the {self.backend} registry is not started: call `await start()` first"
            )
        return self._client

    async def _start_client(self) -> None:
        self._calls.start()
        if self._client is None:
            # Building a client loads botocore's service model from disk: off the event loop.
            self._client = await asyncio.to_thread(self._build_client)
        self._calls.count_throttles(self._client)

    def _build_client(self) -> ClientT:
        config = client_config(max_concurrency=self.max_concurrency, max_attempts=self.max_attempts)
        client = make_client(
            self.service,
            region=self.region,
            endpoint_url=self.endpoint_url,
            config=config,
            backend=self.backend,
        )
        return cast(ClientT, client)

    async def is_registered(self, cp_id: str) -> bool:
        return await self.cache.is_registered(cp_id)

    def forget(self, cp_id: str) -> None:
        """Drop the cached answer for `cp_id`: its next lookup asks AWS."""
        self.cache.forget(cp_id)

    def invalidate(self, cp_id: str) -> None:
        """The Thing was deleted: answer "no" until the negative TTL expires, then ask AWS.

        Not forgetting the id outright matters for mirrors: they are updated from the same
        event, maybe later than this gateway hears of it, and would still say "registered".
        """
        self.cache.mark_unregistered(cp_id)

    async def close(self) -> None:
        await self.cache.close()
        self._calls.close()
        if self._client is not None:
            self._client.close()

    async def list_page(self, token: PageToken | None) -> tuple[list[str], PageToken | None]:
        """One page of every registered id, from `token` (None: the first page), and the token
        of the next page (None: that was the last). Raises `RegistryUnavailable`."""
        return await self._calls.run(self._list_page_blocking, token, listing=True)

    async def _lookup(self, cp_id: str) -> bool:
        return await self._calls.run(self._lookup_blocking, cp_id)

    def _lookup_blocking(self, cp_id: str) -> bool:
        raise NotImplementedError

    def _list_page_blocking(self, token: PageToken | None) -> tuple[list[str], PageToken | None]:
        raise NotImplementedError
