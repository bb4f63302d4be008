"""`DynamoDbRegistry`: a charge point is registered when a DynamoDB table has an item for it.

For accounts where the rate of `iot:DescribeThing` is too low for the fleet: the table mirrors
the Thing registry (the AWS sample keeps it in sync from Thing created/deleted events), keyed by
`chargePointId` (a string). Each lookup is one `dynamodb:GetItem` that projects only the key, so
it costs half a read capacity unit (one with `consistent_read`); the gateway's role needs
`dynamodb:GetItem` on the table.

The same machinery as the AWS IoT registry: a thread pool of `max_concurrency`, adaptive retry
on throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`), and
`RegistryCache` for lifetimes, single flight and stale answers during an outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from gateway.registry.aws_calls import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONCURRENCY,
    CachedAwsRegistry,
    error_code,
)
from gateway.registry.base import RegistryMisconfigured, RegistryUnavailable
from gateway.registry.key_batcher import KeyBatcher
from gateway.registry.mirrored import PageToken

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = structlog.get_logger(__name__)

KEY_ATTRIBUTE = "chargePointId"
# Read at start to check the table: `#` can never be in a charge point id, so no item matches.
PROBE_KEY = "#gateway-start-check"

_PERMISSION_ERRORS = {"AccessDeniedException", "UnrecognizedClientException"}
_THROTTLING_ERRORS = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}
# The most keys BatchGetItem takes per call.
BATCH_SIZE = 100
# Keys DynamoDB left unprocessed (throttling, 16 MB) are asked again after these pauses.
UNPROCESSED_RETRY_DELAYS = (0.05, 0.2, 0.8)


class DynamoDbRegistry(CachedAwsRegistry["DynamoDBClient"]):
    service = "dynamodb"
    backend = "dynamodb"

    def __init__(
        self,
        *,
        table: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        consistent_read: bool = False,
        positive_ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        lookup_timeout: float | None = None,
        batch_lookups: bool = False,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`batch_lookups`: lookups made within a few milliseconds of each other share one
        `BatchGetItem` (up to 100 keys) instead of a `GetItem` each."""
        super().__init__(
            region=region,
            endpoint_url=endpoint_url,
            positive_ttl=positive_ttl,
            negative_ttl=negative_ttl,
            max_concurrency=max_concurrency,
            max_attempts=max_attempts,
            lookup_timeout=lookup_timeout,
            client=client,
            clock=clock,
        )
        self.table = table.strip()
        self.consistent_read = consistent_read
        self.batch_lookups = batch_lookups
        self._batcher: KeyBatcher[str] | None = (
            KeyBatcher(self._lookup_many, max_keys=BATCH_SIZE) if batch_lookups else None
        )

    @property
    def batches(self) -> int:
        """BatchGetItem requests made (0 without `batch_lookups`)."""
        return 0 if self._batcher is None else self._batcher.batches

    async def start(self) -> None:
        """Build the client and check the table; raises `RegistryMisconfigured` saying what to fix.

        A table that is missing or not keyed by `chargePointId` stops the gateway here; a table
        that cannot be reached right now (network, throttling) is only logged: ids are then
        looked up, and refused with a retryable close, as in any registry outage.
        """
        if not self.table:
            raise RegistryMisconfigured(
                "GATEWAY_REGISTRY=dynamodb needs the table's name: set GATEWAY_REGISTRY_TABLE"
            )
        await self._start_client()
        await self._check_table()
        log.info(
            "registry.dynamodb_ready",
            table=self.table,
            region=self.client.meta.region_name,
            endpoint=self.client.meta.endpoint_url,
            consistent_read=self.consistent_read,
            max_concurrency=self.max_concurrency,
            max_attempts=self.max_attempts,
        )

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        await super().close()

    async def _check_table(self) -> None:
        try:
            await self._calls.run(self._lookup_blocking, PROBE_KEY)
        except RegistryMisconfigured:
            raise
        except RegistryUnavailable as exc:
            log.warning("registry.dynamodb_unreachable", table=self.table, error=str(exc))

    def _lookup_blocking(self, cp_id: str) -> bool:
        try:
            response = self.client.get_item(
                TableName=self.table,
                Key={KEY_ATTRIBUTE: {"S": cp_id}},
                ProjectionExpression="#id",
                ExpressionAttributeNames={"#id": KEY_ATTRIBUTE},
                ConsistentRead=self.consistent_read,
            )
        except ClientError as exc:
            raise self._error(exc, cp_id) from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"DynamoDB GetItem failed: {exc}") from exc
        return "Item" in response

    async def _lookup(self, cp_id: str) -> bool:
        if self._batcher is None:
            return await super()._lookup(cp_id)
        return await self._batcher.lookup(cp_id)

    async def _lookup_many(self, cp_ids: list[str]) -> Mapping[str, bool]:
        return await self._calls.run(self._lookup_many_blocking, cp_ids)

    def _lookup_many_blocking(self, cp_ids: list[str]) -> dict[str, bool]:
        """{id: registered} for the ids DynamoDB answered; unprocessed ones are left out."""
        registered: set[str] = set()
        pending = list(cp_ids)
        for pause in (0.0, *UNPROCESSED_RETRY_DELAYS):
            if not pending:
                break
            time.sleep(pause)
            found, pending = self._batch_get(pending)
            registered.update(found)
        unanswered = set(pending)
        return {cp_id: cp_id in registered for cp_id in cp_ids if cp_id not in unanswered}

    def _batch_get(self, cp_ids: list[str]) -> tuple[list[str], list[str]]:
        """(ids found, ids left unprocessed) of one BatchGetItem."""
        try:
            response = self.client.batch_get_item(
                RequestItems={
                    self.table: {
                        "Keys": [{KEY_ATTRIBUTE: {"S": cp_id}} for cp_id in cp_ids],
                        "ProjectionExpression": "#id",
                        "ExpressionAttributeNames": {"#id": KEY_ATTRIBUTE},
                        "ConsistentRead": self.consistent_read,
                    }
                }
            )
        except ClientError as exc:
            raise self._error(exc, "", action="BatchGetItem") from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"DynamoDB BatchGetItem failed: {exc}") from exc
        items = response.get("Responses", {}).get(self.table, [])
        unprocessed: Any = response.get("UnprocessedKeys", {}).get(self.table, {})
        return [_key_of(item) for item in items], [
            _key_of(key) for key in unprocessed.get("Keys", [])
        ]

    def _list_page_blocking(self, token: PageToken | None) -> tuple[list[str], PageToken | None]:
        options: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": {"#id": KEY_ATTRIBUTE},
            "ConsistentRead": self.consistent_read,
        }
        if token is not None:
            options["ExclusiveStartKey"] = token
        try:
            response = self.client.scan(**options)
        except ClientError as exc:
            raise self._error(exc, "", action="Scan") from exc
        except BotoCoreError as exc:
            raise RegistryUnavailable(f"DynamoDB Scan failed: {exc}") from exc
        ids = [_key_of(item) for item in response.get("Items", [])]
        return [cp_id for cp_id in ids if cp_id], response.get("LastEvaluatedKey") or None

    def _error(self, exc: ClientError, cp_id: str, action: str = "GetItem") -> Exception:
        code = error_code(exc)
        where = f"table {self.table!r} in {self.client.meta.region_name}"
        if code == "ResourceNotFoundException":
            problem = (
                f"{where} does not exist: create it (partition key {KEY_ATTRIBUTE}, type S) "
                "or set GATEWAY_REGISTRY_TABLE"
            )
        elif code == "ValidationException":
            problem = (
                f"{where} cannot be read by key {KEY_ATTRIBUTE} ({exc}): its partition key "
                f"must be {KEY_ATTRIBUTE}, a string, with no sort key"
            )
        else:
            hint = ""
            if code in _PERMISSION_ERRORS:
                hint = f"; the gateway's role needs dynamodb:{action} on {where}"
            elif code in _THROTTLING_ERRORS:
                hint = (
                    f"; {where} is throttling reads: raise its read capacity (or use on-demand) "
                    "or GATEWAY_REGISTRY_POSITIVE_TTL"
                )
            return RegistryUnavailable(f"DynamoDB {action} failed: {exc}{hint}")
        if cp_id == PROBE_KEY:
            return RegistryMisconfigured(f"the dynamodb registry cannot use {problem}")
        return RegistryUnavailable(f"DynamoDB {action} failed: {problem}")


def _key_of(item: Mapping[str, Any]) -> str:
    """The charge point id of an item or key (`{"chargePointId": {"S": id}}`); "" if none."""
    value = item.get(KEY_ATTRIBUTE, {})
    return str(value.get("S", "")) if isinstance(value, Mapping) else ""
