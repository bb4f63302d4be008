"""The processor Lambda against moto: answers published, shadows written, partial batch failures."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import structlog
from botocore.config import Config
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from processor import aws_lambda
from processor.aws_lambda import CsmsOnAws, LambdaConfig
from tests.support.aws import MotoServer, isolate_from_real_aws

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lambda"
REGION = "eu-west-1"
NOW = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
SEED_REPORTED = {
    "chargingStation": {
        "model": "ABC 123 XYZ",
        "vendorName": "Acme Electrical Systems",
        "firmwareVersion": "10.9.8.ABC",
        "serialNumber": "CP1234567890A01",
        "modem": {"iccid": "891004234814455936F", "imsi": "310410123456789"},
    },
    "reason": "PowerUp",
}


def event(name: str) -> dict[str, Any]:
    loaded = json.loads((FIXTURES / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def sqs_record(message_id: str, cp_id: str, frame: str, subprotocol: str = "ocpp2.0.1") -> Any:
    body = {
        "payload": base64.b64encode(frame.encode()).decode(),
        "chargePointId": cp_id,
        "subprotocol": subprotocol,
    }
    return {"messageId": message_id, "body": json.dumps(body), "eventSource": "aws:sqs"}


@dataclass
class Aws:
    iot_data: Any

    def published(self) -> list[tuple[str, list[Any]]]:
        backend = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION]
        return [(topic, json.loads(payload)) for topic, payload in backend.published_payloads]

    def shadow(self, cp_id: str, name: str | None = None) -> dict[str, Any]:
        names = {"thingName": cp_id} | ({"shadowName": name} if name else {})
        document = json.loads(self.iot_data.get_thing_shadow(**names)["payload"].read())
        assert isinstance(document, dict)
        return document


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    isolate_from_real_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        for thing in ("CP1", "CP2"):
            iot.create_thing(thingName=thing)
        yield Aws(boto3.client("iot-data", region_name=REGION))


@pytest.fixture
def csms(aws: Aws) -> CsmsOnAws:
    return CsmsOnAws(aws.iot_data, LambdaConfig(), clock=lambda: NOW)


@pytest.mark.parametrize("fixture", ["boot_201_encoded.json", "boot_201_sample_rule.json"])
def test_boot_is_answered_and_the_shadow_matches_the_seed(
    fixture: str, aws: Aws, csms: CsmsOnAws
) -> None:
    assert csms.handle_batch(event(fixture)["Records"]) == {"batchItemFailures": []}
    assert aws.published() == [
        (
            "CP1/out",
            [
                3,
                "0678cb2a-a7a2-42bc-8037-d01164e77ac6",
                {"currentTime": "2024-05-01T10:00:00.000Z", "interval": 10, "status": "Accepted"},
            ],
        )
    ]
    assert aws.shadow("CP1")["state"] == {"reported": SEED_REPORTED}
    assert aws.shadow("CP1", "ocpp")["state"]["reported"] == {
        "subprotocol": "ocpp2.0.1",
        "bootedAt": "2024-05-01T10:00:00.000Z",
        "lastSeen": "2024-05-01T10:00:00.000Z",
    }


def test_a_bad_record_fails_alone(aws: Aws, csms: CsmsOnAws) -> None:
    records = event("mixed_batch.json")["Records"]
    by_name = {record["messageId"]: record for record in records}
    result = csms.handle_batch(records)
    not_json, no_cp_id = records[1]["messageId"], records[2]["messageId"]
    assert result == {
        "batchItemFailures": [{"itemIdentifier": not_json}, {"itemIdentifier": no_cp_id}]
    }
    assert set(by_name) > {not_json, no_cp_id}
    answers = {(topic, frame[1]): frame for topic, frame in aws.published()}
    assert set(answers) == {("CP1/out", "hb-1"), ("CP2/out", "sn-1"), ("CP1/out", "u-1")}
    assert answers[("CP1/out", "u-1")][:3] == [4, "u-1", "NotImplemented"]
    connectors = aws.shadow("CP2", "ocpp")["state"]["reported"]["connectors"]
    assert connectors == {
        "1": {
            "status": "Preparing",
            "timestamp": "2024-05-01T10:00:00.000Z",
            "errorCode": "NoError",
        }
    }
    assert (
        aws.shadow("CP1", "ocpp")["state"]["reported"]["lastHeartbeat"]
        == "2024-05-01T10:00:00.000Z"
    )


def test_a_redelivered_start_transaction_gets_the_same_id(aws: Aws, csms: CsmsOnAws) -> None:
    records = event("start_transaction_16.json")["Records"]
    assert csms.handle_batch(records) == {"batchItemFailures": []}
    assert csms.handle_batch(records) == {"batchItemFailures": []}  # SQS delivers it again
    other = sqs_record(
        "other",
        "CP2",
        '[2,"st-2","StartTransaction",{"connectorId":2,"idTag":"TAG2","meterStart":5,'
        '"timestamp":"2024-05-01T10:00:00Z"}]',
        "ocpp1.6",
    )
    assert csms.handle_batch([other]) == {"batchItemFailures": []}
    answers = [frame for _, frame in aws.published()]
    assert [(frame[1], frame[2]["transactionId"]) for frame in answers] == [
        ("st-1", 1),
        ("st-1", 1),
        ("st-2", 2),
    ]
    assert aws.shadow("CP2", "ocpp")["state"]["reported"]["transactions"]["lastId"] == 2


def test_concurrent_updates_of_the_state_shadow_are_retried(aws: Aws) -> None:
    class AnotherInvocationWritesFirst:
        """The real client, with another writer updating the shadow right after each read."""

        def __init__(self, client: Any) -> None:
            self.client = client
            self.interleavings = 0

        def get_thing_shadow(self, **kwargs: Any) -> Any:
            response = self.client.get_thing_shadow(**kwargs)
            if self.interleavings < 2:
                self.interleavings += 1
                self.client.update_thing_shadow(
                    payload=json.dumps({"state": {"reported": {"lastSeen": "x"}}}).encode(),
                    **kwargs,
                )
            return response

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

    aws.iot_data.update_thing_shadow(
        thingName="CP2",
        shadowName="ocpp",
        payload=json.dumps({"state": {"reported": {"transactions": {"lastId": 41, "recent": []}}}}),
    )
    racing = AnotherInvocationWritesFirst(aws.iot_data)
    csms = CsmsOnAws(racing, LambdaConfig(), clock=lambda: NOW)
    assert csms.handle_batch(event("start_transaction_16.json")["Records"]) == {
        "batchItemFailures": []
    }
    assert racing.interleavings == 2
    assert aws.published()[0][1][2]["transactionId"] == 42


def test_a_new_boot_replaces_the_hardware_attributes(aws: Aws, csms: CsmsOnAws) -> None:
    csms.handle_batch(event("boot_201_encoded.json")["Records"])
    smaller = {
        "chargingStation": {"model": "XYZ 2", "vendorName": "Acme"},
        "reason": "FirmwareUpdate",
    }
    frame = json.dumps([2, "boot-2", "BootNotification", smaller])
    assert csms.handle_batch([sqs_record("b2", "CP1", frame)]) == {"batchItemFailures": []}
    assert aws.shadow("CP1")["state"] == {"reported": smaller}


def test_an_unregistered_thing_still_gets_its_answer(aws: Aws, csms: CsmsOnAws) -> None:
    result = csms.handle_batch([sqs_record("h", "CPX", '[2,"hb-x","Heartbeat",{}]')])
    assert result == {"batchItemFailures": []}
    assert aws.published()[0][0] == "CPX/out"


def test_records_fail_and_are_redelivered_when_aws_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_from_real_aws(monkeypatch, tmp_path)
    server = MotoServer()
    try:
        client = boto3.client(
            "iot-data",
            region_name=REGION,
            endpoint_url=server.url,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )
        csms = CsmsOnAws(client, LambdaConfig(), clock=lambda: NOW)
        server.stop()
        records = event("mixed_batch.json")["Records"]
        failed = {
            item["itemIdentifier"] for item in csms.handle_batch(records)["batchItemFailures"]
        }
    finally:
        server.stop()
    dropped_without_aws = {
        records[3]["messageId"]
    }  # a garbage frame needs neither answer nor state
    assert failed == {record["messageId"] for record in records} - dropped_without_aws


@pytest.fixture
def default_logging() -> Iterator[None]:
    """The handler configures structlog for Lambda; give the next tests the defaults back."""
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


@pytest.mark.usefixtures("default_logging")
def test_the_handler_creates_its_client_once(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_lambda, "_csms", None)
    monkeypatch.setenv("PROCESSOR_HEARTBEAT_INTERVAL", "30")

    class Context:
        aws_request_id = "req-1"

    first = aws_lambda.handler(event("boot_201_encoded.json"), Context())
    created = aws_lambda._csms
    second = aws_lambda.handler(event("mixed_batch.json"), Context())
    assert aws_lambda._csms is created
    assert first == {"batchItemFailures": []}
    assert len(second["batchItemFailures"]) == 2
    assert aws.published()[0][1][2]["interval"] == 30
    assert aws_lambda.handler({}, Context()) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PROCESSOR_HEARTBEAT_INTERVAL", "soon", "PROCESSOR_HEARTBEAT_INTERVAL"),
        ("PROCESSOR_HEARTBEAT_INTERVAL", "0", "PROCESSOR_HEARTBEAT_INTERVAL"),
        ("PROCESSOR_TOPIC_OUT", "out", "{cp_id}"),
    ],
)
def test_bad_lambda_configuration_is_refused_clearly(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LambdaConfig.from_environment({variable: value})
