"""Which charge point ids may connect.

`build_registry(settings)` returns the backend named by `GATEWAY_REGISTRY`:

- `file` (default): ids in a local file (`GATEWAY_REGISTRY_FILE`), picked up when it changes;
  edit it with `ocpp-things`.
- `static`: the ids in `GATEWAY_REGISTRY_IDS=CP1,CP2`.
- `allow-all`: every id; for development only.
- `aws-iot`: the AWS IoT Thing registry (`iot:ListThings`, `iot:DescribeThing`); needs boto3
  (`pip install 'ocpp-mqtt-gateway[aws]'`).
- `dynamodb`: a DynamoDB table mirroring the Things (`GATEWAY_REGISTRY_TABLE`, keyed by
  `chargePointId`); needs boto3 too.

Both AWS backends are wrapped in `MirroredRegistry` (unless `GATEWAY_REGISTRY_MIRROR=false`):
a copy of every registered id, read in the background, answers known ids without AWS; other
ids are looked up one by one (cached; batched for DynamoDB).
"""

from __future__ import annotations

from typing import TypedDict

from gateway.registry.allow_all import AllowAllRegistry
from gateway.registry.base import Registry, RegistryMisconfigured, RegistryUnavailable
from gateway.registry.cache import RegistryCache
from gateway.registry.file import FileRegistry
from gateway.registry.ids import is_valid_cp_id
from gateway.registry.mirrored import MirroredRegistry, MirrorSource
from gateway.registry.static import StaticRegistry
from gateway.settings import RegistryBackend, Settings

__all__ = [
    "AllowAllRegistry",
    "FileRegistry",
    "MirroredRegistry",
    "Registry",
    "RegistryCache",
    "RegistryMisconfigured",
    "RegistryUnavailable",
    "StaticRegistry",
    "build_registry",
    "is_valid_cp_id",
]


def build_registry(settings: Settings) -> Registry:
    backend = settings.registry
    if backend is RegistryBackend.FILE:
        return FileRegistry(
            settings.registry_file, poll_interval=settings.registry_file_poll_interval
        )
    if backend is RegistryBackend.STATIC:
        return StaticRegistry(settings.registry_ids)
    if backend is RegistryBackend.ALLOW_ALL:
        return AllowAllRegistry()
    if backend is RegistryBackend.AWS_IOT:
        return _aws_iot_registry(settings)
    if backend is RegistryBackend.DYNAMODB:
        return _dynamodb_registry(settings)
    raise RegistryMisconfigured(f"unknown registry backend {backend!r}")


# boto3 is an optional dependency: imported only when an AWS backend is chosen.
_NEEDS_BOTO3 = "GATEWAY_REGISTRY={} needs boto3 ({}): pip install 'ocpp-mqtt-gateway[aws]'"


def _aws_iot_registry(settings: Settings) -> Registry:
    try:
        from gateway.registry.aws_iot import AwsIotRegistry
    except ImportError as exc:
        raise RegistryMisconfigured(_NEEDS_BOTO3.format("aws-iot", exc)) from exc
    return _mirrored(AwsIotRegistry(**_aws_options(settings)), settings)


def _dynamodb_registry(settings: Settings) -> Registry:
    try:
        from gateway.registry.dynamodb import DynamoDbRegistry
    except ImportError as exc:
        raise RegistryMisconfigured(_NEEDS_BOTO3.format("dynamodb", exc)) from exc
    registry = DynamoDbRegistry(
        table=settings.registry_table,
        consistent_read=settings.registry_consistent_read,
        batch_lookups=settings.registry_mirror,
        **_aws_options(settings),
    )
    return _mirrored(registry, settings)


def _mirrored(registry: MirrorSource, settings: Settings) -> Registry:
    if not settings.registry_mirror:
        return registry
    return MirroredRegistry(registry, resync_interval=settings.registry_resync_interval)


class _AwsOptions(TypedDict):
    region: str | None
    endpoint_url: str | None
    positive_ttl: float
    negative_ttl: float
    max_concurrency: int
    max_attempts: int
    lookup_timeout: float


def _aws_options(settings: Settings) -> _AwsOptions:
    """What every AWS-backed registry is built with."""
    return _AwsOptions(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        positive_ttl=settings.registry_positive_ttl,
        negative_ttl=settings.registry_negative_ttl,
        max_concurrency=settings.registry_max_concurrency,
        max_attempts=settings.registry_max_attempts,
        lookup_timeout=settings.registry_timeout,
    )
