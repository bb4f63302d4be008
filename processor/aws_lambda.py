"""The processor as an AWS Lambda: IoT rule `+/in` -> SQS -> `handler`.

Each SQS record holds one frame a charge point sent (see `processor.aws_records`). The answer
is published with the IoT data plane to `<cpId>/out`; what the CP reports is recorded in its
device shadows:

- the classic shadow holds the hardware attributes of the last BootNotification, exactly as the
  CP sent them: `{"state": {"reported": {"chargingStation": {...}, "reason": "PowerUp"}}}`;
- the named shadow `ocpp` (`PROCESSOR_STATE_SHADOW`) holds the rest of the state document
  (last heartbeat, last seen, connector statuses, OCPP 1.6 transaction ids).

Failed records are reported in `batchItemFailures`, so SQS redelivers only those. Redelivery is
harmless: an OCPP 1.6 StartTransaction seen before gets the transaction id it got the first
time, other answers are simply sent again.

Environment: `AWS_REGION`, `IOT_DATA_ENDPOINT` (optional, the account's IoT data endpoint;
`IOT_ENDPOINT` is also read), `PROCESSOR_HEARTBEAT_INTERVAL` (10), `PROCESSOR_TOPIC_OUT`
(`{cp_id}/out`), `PROCESSOR_STATE_SHADOW` (`ocpp`; empty: do not record it),
`PROCESSOR_LOG_LEVEL` or `LOG_LEVEL` (INFO).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import structlog

from processor.answers import AnswerConfig, Inbound, Kind, Outcome, needs_state, respond
from processor.aws_records import BadRecord, decode_body
from processor.state import (
    JsonObject,
    StateChange,
    change_patch,
    empty_document,
    replacement_patch,
    sanitize,
)
from processor.topics import TopicTemplate

log = structlog.get_logger(__name__)

# How often a StartTransaction is retried when another invocation updated the shadow meanwhile.
MAX_STATE_ATTEMPTS = 5


class IotData(Protocol):
    """The part of boto3's `iot-data` client the Lambda uses."""

    def publish(self, **kwargs: Any) -> Any: ...

    def get_thing_shadow(self, **kwargs: Any) -> Any: ...

    def update_thing_shadow(self, **kwargs: Any) -> Any: ...


class VersionConflict(Exception):
    """The shadow changed between reading and writing it."""


@dataclass(frozen=True)
class LambdaConfig:
    heartbeat_interval: int = 10
    topic_out: str = "{cp_id}/out"
    state_shadow: str = "ocpp"
    log_level: str = "INFO"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LambdaConfig:
        """Read the `PROCESSOR_*` variables; raises ValueError naming the variable to fix."""
        interval_text = environ.get("PROCESSOR_HEARTBEAT_INTERVAL", "10")
        try:
            interval = int(interval_text)
        except ValueError:
            interval = 0
        if interval < 1:
            raise ValueError(
                f"PROCESSOR_HEARTBEAT_INTERVAL must be a whole number of seconds ≥ 1, "
                f"not {interval_text!r}"
            )
        config = cls(
            heartbeat_interval=interval,
            topic_out=environ.get("PROCESSOR_TOPIC_OUT", "{cp_id}/out"),
            state_shadow=environ.get("PROCESSOR_STATE_SHADOW", "ocpp"),
            log_level=environ.get("PROCESSOR_LOG_LEVEL") or environ.get("LOG_LEVEL") or "INFO",
        )
        TopicTemplate(config.topic_out)  # raises ValueError with what is wrong
        return config


class CsmsOnAws:
    """Answers the records of one SQS batch; holds the clients for the container's lifetime."""

    def __init__(
        self,
        iot_data: IotData,
        config: LambdaConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._iot_data = iot_data
        self._config = config
        self._answer_config = AnswerConfig(heartbeat_interval=config.heartbeat_interval)
        self._topic_out = TopicTemplate(config.topic_out)
        self._clock = clock

    def handle_batch(self, records: list[Any]) -> dict[str, list[dict[str, str]]]:
        """Handle every record; the ones that failed are returned for SQS to redeliver."""
        failures = []
        for record in records:
            message_id = str(record.get("messageId", "")) if isinstance(record, dict) else ""
            try:
                self.handle_record(record)
            except BadRecord as exc:
                log.error("record.unreadable", sqs_message_id=message_id, reason=str(exc))
                failures.append({"itemIdentifier": message_id})
            except Exception as exc:  # one failure must not fail (and redeliver) the batch
                log.error(
                    "record.failed",
                    sqs_message_id=message_id,
                    error=f"{type(exc).__name__}: {exc}",
                    # AWS errors (throttling, network) are expected; anything else is a bug.
                    exc_info=not _is_aws_error(exc),
                )
                failures.append({"itemIdentifier": message_id})
        return {"batchItemFailures": failures}

    def handle_record(self, record: Any) -> None:
        if not isinstance(record, dict):
            raise BadRecord("the SQS record is not an object")
        message = decode_body(record.get("body"))
        inbound = Inbound(message.cp_id, message.frame, self._clock(), message.subprotocol)
        if needs_state(inbound):
            # The answer depends on recorded state: record first, so a redelivery finds it.
            outcome = self._respond_and_record(inbound)
            self._publish_answer(message.cp_id, outcome)
        else:
            outcome = respond(inbound, empty_document(message.cp_id), self._answer_config)
            self._publish_answer(message.cp_id, outcome)
            self._record(message.cp_id, outcome.change, empty_document(message.cp_id), None)
        _log_outcome(message.cp_id, outcome, record.get("messageId"))

    def _respond_and_record(self, inbound: Inbound) -> Outcome:
        for _ in range(MAX_STATE_ATTEMPTS):
            state, version = self._load_state(inbound.cp_id)
            outcome = respond(inbound, state, self._answer_config)
            try:
                self._record(inbound.cp_id, outcome.change, state, version)
            except VersionConflict:
                continue
            return outcome
        raise VersionConflict(f"the state shadow of {inbound.cp_id} kept changing; retry later")

    def _publish_answer(self, cp_id: str, outcome: Outcome) -> None:
        if outcome.reply is not None:
            self._iot_data.publish(
                topic=self._topic_out.topic(cp_id), qos=1, payload=outcome.reply.encode()
            )

    def _record(
        self, cp_id: str, change: StateChange, state: JsonObject, version: int | None
    ) -> None:
        if change.boot is not None:
            self._record_hardware(cp_id, change.boot)
        patch = change_patch(change, state)
        if self._config.state_shadow and patch:
            document: JsonObject = {"state": {"reported": patch}}
            if version is not None:
                document["version"] = version
            self._update_shadow(cp_id, document, self._config.state_shadow)

    def _record_hardware(self, cp_id: str, reported: JsonObject) -> None:
        """Make the classic shadow's `reported` exactly the CP's last boot attributes."""
        shadow = self._get_shadow(cp_id, None)
        previous = shadow["state"].get("reported") if shadow else None
        patch = replacement_patch(previous if isinstance(previous, dict) else None, reported)
        self._update_shadow(cp_id, {"state": {"reported": patch}}, None)

    def _load_state(self, cp_id: str) -> tuple[JsonObject, int | None]:
        if not self._config.state_shadow:
            return empty_document(cp_id), None
        shadow = self._get_shadow(cp_id, self._config.state_shadow)
        if shadow is None:
            return empty_document(cp_id), None
        reported = shadow["state"].get("reported")
        document = {**(reported if isinstance(reported, dict) else {}), "chargePointId": cp_id}
        version = shadow.get("version")
        return sanitize(document, cp_id) or empty_document(cp_id), (
            version if isinstance(version, int) else None
        )

    def _get_shadow(self, cp_id: str, shadow_name: str | None) -> JsonObject | None:
        names = {"thingName": cp_id} | ({"shadowName": shadow_name} if shadow_name else {})
        try:
            response = self._iot_data.get_thing_shadow(**names)
        except Exception as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        shadow = json.loads(response["payload"].read())
        if not isinstance(shadow, dict) or not isinstance(shadow.get("state"), dict):
            return None
        return shadow

    def _update_shadow(self, cp_id: str, document: JsonObject, shadow_name: str | None) -> None:
        names = {"thingName": cp_id} | ({"shadowName": shadow_name} if shadow_name else {})
        try:
            self._iot_data.update_thing_shadow(payload=json.dumps(document).encode(), **names)
        except Exception as exc:
            code = _error_code(exc)
            if code == "ConflictException":
                raise VersionConflict(str(exc)) from exc
            if code == "ResourceNotFoundException":
                # No such thing: retrying cannot help, and the CP has (or gets) its answer.
                log.warning("shadow.thing_missing", cp_id=cp_id, shadow=shadow_name or "classic")
                return
            raise


def _error_code(error: Exception) -> str | None:
    """The AWS error code of a botocore ClientError (None for other exceptions)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _is_aws_error(error: Exception) -> bool:
    return type(error).__module__.startswith("botocore") or isinstance(error, VersionConflict)


def _log_outcome(cp_id: str, outcome: Outcome, sqs_message_id: object) -> None:
    fields = {
        "cp_id": cp_id,
        "message_id": outcome.message_id,
        "action": outcome.action,
        "sqs_message_id": sqs_message_id,
    }
    if outcome.kind is Kind.INVALID:
        log.warning("frame.dropped", reason=outcome.detail, **fields)
    elif outcome.kind is Kind.RESPONSE:
        log.info("cp.response", error_code=outcome.error_code, **fields)
    elif outcome.error_code is not None:
        log.info(
            "call.refused", error_code=outcome.error_code, description=outcome.detail, **fields
        )
    elif outcome.change.boot is not None:
        log.info("cp.booted", subprotocol=outcome.subprotocol, **fields)
    else:
        log.debug("call.answered", **fields)


# -- the Lambda entry point ----------------------------------------------------------------

_csms: CsmsOnAws | None = None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Lambda handler `processor.aws_lambda.handler` for SQS events (ReportBatchItemFailures)."""
    global _csms
    if _csms is None:
        _csms = build_from_environment(os.environ)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(aws_request_id=getattr(context, "aws_request_id", None))
    records = event.get("Records")
    return _csms.handle_batch(records if isinstance(records, list) else [])


def build_from_environment(environ: Mapping[str, str]) -> CsmsOnAws:
    """Configure logs and create the iot-data client once per Lambda container."""
    import boto3  # in the Lambda runtime; imported here so the answering code does not need it

    config = LambdaConfig.from_environment(environ)
    configure_logging(config.log_level)
    # The data endpoint serves both MQTT and the HTTPS API: the gateway's IOT_ENDPOINT works too.
    endpoint = environ.get("IOT_DATA_ENDPOINT") or environ.get("IOT_ENDPOINT") or None
    if endpoint is not None and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    client = boto3.client("iot-data", region_name=environ.get("AWS_REGION"), endpoint_url=endpoint)
    # With boto3-stubs installed the client's methods take typed keywords, which a Protocol
    # of `**kwargs: Any` methods does not match; the calls made are the documented ones.
    return CsmsOnAws(cast(IotData, client), config)


def configure_logging(level: str) -> None:
    """JSON lines on stdout, which Lambda sends to CloudWatch Logs."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(),  # sys.stdout as it is when logging
    )
