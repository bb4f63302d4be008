"""`AwsIotRegistry`: a charge point is registered when an AWS IoT Thing has its id as name.

Each lookup is one `iot:DescribeThing` call (the gateway's role needs that permission), made
through one boto3 client on a small thread pool of its own, so the event loop never blocks and
at most `max_concurrency` calls reach the AWS control plane at once. Answers are cached by
`RegistryCache`: positive and negative lifetimes, one call in flight per id, and during an
outage (throttling, network, 5xx, credentials) ids that were registered before keep being
answered "yes" while unknown ones raise `RegistryUnavailable`.

Thing names allow only `[a-zA-Z0-9:_-]`: a charge point id with other characters (`* = | @ .`,
valid in OCPP) can never be a Thing and is answered "no" without calling AWS.

`endpoint_url` points the client elsewhere, e.g. a local emulator such as `moto_server`; when
unset, boto3's own `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_IOT` variables still apply.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from gateway.registry.base import RegistryMisconfigured, RegistryUnavailable
from gateway.registry.cache import RegistryCache

if TYPE_CHECKING:
    from mypy_boto3_iot import IoTClient

log = structlog.get_logger(__name__)

DEFAULT_MAX_CONCURRENCY = 16
_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_NOT_FOUND = "ResourceNotFoundException"
_PERMISSION_ERRORS = {
    "AccessDeniedException",
    "UnauthorizedException",
    "UnrecognizedClientException",
}

# A handshake waits for the answer, so a slow control plane must fail fast rather than hold
# charge points until their own timeout: short timeouts and a single retry.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 4.0
MAX_ATTEMPTS = 2


def is_thing_name(cp_id: str) -> bool:
    """Whether an AWS IoT Thing could have this name."""
    return _THING_NAME.fullmatch(cp_id) is not None


class AwsIotRegistry:
    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        positive_ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        client: IoTClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`client` is built at `start()` from `region` and `endpoint_url` unless one is given."""
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.region = region
        self.endpoint_url = endpoint_url
        self.max_concurrency = max_concurrency
        self._client = client
        self._executor: ThreadPoolExecutor | None = None
        self.cache: RegistryCache[str] = RegistryCache(
            self._describe_thing,
            positive_ttl=positive_ttl,
            negative_ttl=negative_ttl,
            clock=clock,
        )

    @property
    def client(self) -> IoTClient:
        if self._client is None:
            raise RuntimeError("the AWS IoT registry is not started: call `await start()` first")
        return self._client

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="registry-aws-iot"
        )
        if self._client is None:
            # Building a client loads botocore's service model from disk: off the event loop.
            self._client = await asyncio.to_thread(self._build_client)
        log.info(
            "registry.aws_iot_ready",
            region=self.client.meta.region_name,
            endpoint=self.client.meta.endpoint_url,
            max_concurrency=self.max_concurrency,
        )

    async def is_registered(self, cp_id: str) -> bool:
        if not is_thing_name(cp_id):
            log.debug("registry.not_a_thing_name", cp_id=cp_id)
            return False
        return await self.cache.is_registered(cp_id)

    async def close(self) -> None:
        await self.cache.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._client is not None:
            self._client.close()

    def _build_client(self) -> IoTClient:
        config = Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            max_pool_connections=self.max_concurrency,
        )
        try:
            return boto3.session.Session().client(
                "iot", region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )
        except NoRegionError:
            raise RegistryMisconfigured(
                "the aws-iot registry needs an AWS region: set AWS_REGION (e.g. eu-west-1)"
            ) from None
        except ValueError as exc:
            raise RegistryMisconfigured(
                f"the aws-iot registry cannot use endpoint {self.endpoint_url!r}: {exc}; "
                "check GATEWAY_AWS_ENDPOINT_URL"
            ) from None

    async def _describe_thing(self, cp_id: str) -> bool:
        if self._executor is None:
            raise RuntimeError("the AWS IoT registry is not started: call `await start()` first")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._describe_thing_blocking, cp_id)

    def _describe_thing_blocking(self, cp_id: str) -> bool:
        try:
            self.client.describe_thing(thingName=cp_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == _NOT_FOUND:
                return False
            hint = (
                "; the gateway's role needs iot:DescribeThing" if code in _PERMISSION_ERRORS else ""
            )
            raise RegistryUnavailable(f"AWS IoT DescribeThing failed: {exc}{hint}") from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"AWS IoT DescribeThing failed: {exc}") from exc
        return True
