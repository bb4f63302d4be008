"""`AwsIotRegistry`: a charge point is registered when an AWS IoT Thing has its id as name.

Each lookup is one `iot:DescribeThing` call (the gateway's role needs that permission), made
through one boto3 client on a small thread pool of its own, so the event loop never blocks and
at most `max_concurrency` calls reach the AWS control plane at once. Throttled calls are retried
in botocore's adaptive mode, which also slows the client down while AWS throttles it; every
throttled response is counted in `stats.throttles`. Answers are cached by `RegistryCache`:
positive and negative lifetimes, one call in flight per id, and during an outage (throttling,
network, 5xx, credentials) ids that were registered before keep being answered "yes" while
unknown ones raise `RegistryUnavailable`.

Thing names allow only `[a-zA-Z0-9:_-]`: a charge point id with other characters (`* = | @ .`,
valid in OCPP) can never be a Thing and is answered "no" without calling AWS.

`endpoint_url` points the client elsewhere, e.g. a local emulator such as `moto_server`; when
unset, boto3's own `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_IOT` variables still apply.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from gateway.registry.aws_calls import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONCURRENCY,
    CachedAwsRegistry,
    error_code,
)
from gateway.registry.base import RegistryUnavailable
from gateway.registry.mirrored import PageToken

if TYPE_CHECKING:
    from mypy_boto3_iot import IoTClient
else:
    IoTClient = Any  # the typing stubs are a development dependency

__all__ = ["DEFAULT_MAX_ATTEMPTS", "DEFAULT_MAX_CONCURRENCY", "AwsIotRegistry", "is_thing_name"]

log = structlog.get_logger(__name__)

_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_NOT_FOUND = "ResourceNotFoundException"
_PERMISSION_ERRORS = {
    "AccessDeniedException",
    "UnauthorizedException",
    "UnrecognizedClientException",
}
_THROTTLED = "ThrottlingException"
# The most ListThings returns per call.
LIST_PAGE_SIZE = 250


def is_thing_name(cp_id: str) -> bool:
    """Whether an AWS IoT Thing could have this name."""
    return _THING_NAME.fullmatch(cp_id) is not None


class AwsIotRegistry(CachedAwsRegistry[IoTClient]):
    service = "iot"
    backend = "aws-iot"

    async def start(self) -> None:
        await self._start_client()
        log.info(
            "registry.aws_iot_ready",
            region=self.client.meta.region_name,
            endpoint=self.client.meta.endpoint_url,
            max_concurrency=self.max_concurrency,
            max_attempts=self.max_attempts,
        )

    async def is_registered(self, cp_id: str) -> bool:
        if not is_thing_name(cp_id):
            log.debug("registry.not_a_thing_name", cp_id=cp_id)
            return False
        return await super().is_registered(cp_id)

    def _lookup_blocking(self, cp_id: str) -> bool:
        try:
            self.client.describe_thing(thingName=cp_id)
        except ClientError as exc:
            code = error_code(exc)
            if code == _NOT_FOUND:
                return False
            raise RegistryUnavailable(f"AWS IoT DescribeThing failed: {exc}{_hint(code)}") from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"AWS IoT DescribeThing failed: {exc}") from exc
        return True

    def _list_page_blocking(self, token: PageToken | None) -> tuple[list[str], PageToken | None]:
        try:
            if token is None:
                response = self.client.list_things(maxResults=LIST_PAGE_SIZE)
            else:
                response = self.client.list_things(maxResults=LIST_PAGE_SIZE, nextToken=str(token))
        except ClientError as exc:
            code = error_code(exc)
            raise RegistryUnavailable(
                f"AWS IoT ListThings failed: {exc}{_hint(code, 'iot:ListThings')}"
            ) from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"AWS IoT ListThings failed: {exc}") from exc
        names = [thing["thingName"] for thing in response.get("things", []) if "thingName" in thing]
        return names, response.get("nextToken") or None


def _hint(code: str, action: str = "iot:DescribeThing") -> str:
    if code in _PERMISSION_ERRORS:
        return f"; the gateway's role needs {action}"
    if code == _THROTTLED and action == "iot:ListThings":
        return (
            "; AWS IoT is throttling ListThings: the mirror goes on reading after a back-off; "
            "if this repeats, raise GATEWAY_REGISTRY_RESYNC_INTERVAL"
        )
    if code == _THROTTLED:
        return (
            "; AWS IoT is throttling DescribeThing: raise GATEWAY_REGISTRY_POSITIVE_TTL, lower "
            "GATEWAY_REGISTRY_MAX_CONCURRENCY, or mirror the Things in DynamoDB "
            "(GATEWAY_REGISTRY=dynamodb)"
        )
    return ""
