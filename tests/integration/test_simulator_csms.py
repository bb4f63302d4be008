"""The simulator against a central system built on the `ocpp` library: every message it sends
is checked against the OCPP JSON schemas, and the CSMS drives it with its own requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ocpp import v16, v21, v201

from tests.support.ocpp_csms import OcppCsms
from tests.support.simulator_process import SimulatorProcess
from tests.support.waiting import until

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[SimulatorProcess]]
QUICK_SESSION = ("--meter-interval", "0.05", "--meter-samples", "3")


@pytest.fixture
async def simulator() -> AsyncIterator[Start]:
    started: list[SimulatorProcess] = []

    async def start(*arguments: str) -> SimulatorProcess:
        process = await SimulatorProcess.start(*arguments)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


@pytest.fixture
async def csms() -> AsyncIterator[OcppCsms]:
    async with OcppCsms() as running:
        yield running


def statuses_201(csms: OcppCsms, cp_id: str) -> list[str]:
    return [p["connectorStatus"] for p in csms.payloads(cp_id, "StatusNotification")]


async def test_scenario_201_is_a_complete_valid_session(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator(
        "--url", csms.url, "--cp-id", "CP1", "--scenario", "--heartbeats", "0",
        "--power-kw", "36", *QUICK_SESSION,
    )  # fmt: skip
    assert await cp.wait() == 0, cp.output

    assert csms.errors_sent == []
    assert csms.actions("CP1") == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "TransactionEvent",
        "TransactionEvent",
        "TransactionEvent",
        "TransactionEvent",
        "TransactionEvent",
        "StatusNotification",
    ]
    assert statuses_201(csms, "CP1") == ["Available", "Occupied", "Available"]
    [authorize] = csms.payloads("CP1", "Authorize")
    assert authorize["idToken"] == {"idToken": "04A1B2C3D4E5F6", "type": "ISO14443"}
    events = csms.payloads("CP1", "TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3, 4]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert events[0]["triggerReason"] == "Authorized"
    assert events[0]["idToken"]["idToken"] == "04A1B2C3D4E5F6"
    assert events[-1]["transactionInfo"]["stoppedReason"] == "Local"
    energy = [
        value["value"]
        for event in events
        for reading in event["meterValue"]
        for value in reading["sampledValue"]
        if value["measurand"] == "Energy.Active.Import.Register"
    ]
    assert energy[0] == 0.0
    assert energy[1:4] == sorted(energy[1:4])
    assert energy[1] < energy[2] < energy[3] == energy[4]
    # 36 kW for 3 x 0.05 s = 1.5 Wh
    assert energy[3] == pytest.approx(1.5, abs=0.002)


async def test_scenario_16_is_a_complete_valid_session(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator(
        "--url", csms.url, "--cp-id", "CP16", "--ocpp", "1.6", "--scenario",
        "--heartbeats", "0", *QUICK_SESSION,
    )  # fmt: skip
    assert await cp.wait() == 0, cp.output

    assert csms.errors_sent == []
    assert csms.actions("CP16") == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        "StatusNotification",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
        "StatusNotification",
        "StatusNotification",
    ]
    statuses = [p["status"] for p in csms.payloads("CP16", "StatusNotification")]
    assert statuses == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    [boot] = csms.payloads("CP16", "BootNotification")
    assert boot["chargePointVendor"] == "Acme Electrical Syst"
    [start] = csms.payloads("CP16", "StartTransaction")
    [stop] = csms.payloads("CP16", "StopTransaction")
    assert stop["transactionId"] == 1
    assert stop["reason"] == "Local"
    assert stop["meterStop"] >= start["meterStart"] == 0
    meter_ids = {p["transactionId"] for p in csms.payloads("CP16", "MeterValues")}
    assert meter_ids == {1}


async def test_refused_authorization_ends_the_session_without_a_transaction(
    simulator: Start,
) -> None:
    async with OcppCsms(authorize_status="Blocked") as csms:
        cp = await simulator(
            "--url", csms.url, "--cp-id", "CP1", "--scenario", "--heartbeats", "0", *QUICK_SESSION
        )
        assert await cp.wait() == 0
    assert "TransactionEvent" not in csms.actions("CP1")
    assert statuses_201(csms, "CP1") == ["Available", "Occupied", "Available"]
    assert "WARNING:root:CP1: central system answered Authorize with Blocked" in cp.lines


async def test_csms_reads_and_writes_variables_201(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator("--url", csms.url, "--cp-id", "CP1")
    await csms.wait_for("CP1", "Heartbeat")

    got = await csms.request(
        "CP1",
        v201.call.GetVariables(
            get_variable_data=[
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "Identity"}},
                {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "X"}},
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "X"}},
            ]
        ),
    )
    results = got.get_variable_result
    assert [r["attribute_status"] for r in results] == [
        "Accepted",
        "Accepted",
        "UnknownComponent",
        "UnknownVariable",
    ]
    assert results[0]["attribute_value"] == "10"
    assert results[1]["attribute_value"] == "CP1"
    assert "attribute_value" not in results[2]

    written = await csms.request(
        "CP1",
        v201.call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attribute_value": "1",
                },
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "Identity"},
                    "attribute_value": "CP9",
                },
            ]
        ),
    )
    assert [r["attribute_status"] for r in written.set_variable_result] == [
        "Accepted",
        "Rejected",
    ]
    # The new interval applies at once, not after the 10 s wait under way.
    before = len(csms.payloads("CP1", "Heartbeat"))
    await csms.wait_for("CP1", "Heartbeat", count=before + 2, timeout=8)
    assert csms.errors_sent == []
    assert await cp.interrupt() == 0


async def test_csms_triggers_messages_201(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator("--url", csms.url, "--cp-id", "CP1")
    await csms.wait_for("CP1", "Heartbeat")

    for message, action in [
        ("StatusNotification", "StatusNotification"),
        ("MeterValues", "MeterValues"),
        ("Heartbeat", "Heartbeat"),
        ("BootNotification", "BootNotification"),
    ]:
        before = len(csms.payloads("CP1", action))
        answer = await csms.request("CP1", v201.call.TriggerMessage(requested_message=message))
        assert answer.status == "Accepted"
        await csms.wait_for("CP1", action, count=before + 1)
    boots = csms.payloads("CP1", "BootNotification")
    assert [b["reason"] for b in boots] == ["PowerUp", "Triggered"]
    answer = await csms.request(
        "CP1", v201.call.TriggerMessage(requested_message="LogStatusNotification")
    )
    assert answer.status == "NotImplemented"
    assert csms.errors_sent == []
    assert await cp.interrupt() == 0


async def test_csms_reset_reboots_the_station_201(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator("--url", csms.url, "--cp-id", "CP1")
    await csms.wait_for("CP1", "Heartbeat")

    answer = await csms.request("CP1", v201.call.Reset(type="Immediate"))
    assert answer.status == "Accepted"
    boots = await csms.wait_for("CP1", "BootNotification", count=2)
    assert [b["reason"] for b in boots] == ["PowerUp", "RemoteReset"]
    assert csms.connections["CP1"] == 2
    await cp.wait_for_line(r"^INFO:root:CP1: rebooting \(Reset Immediate\)$")
    assert await cp.interrupt() == 0
    assert "Traceback" not in cp.output


async def test_csms_starts_and_stops_a_transaction_201(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator(
        "--url", csms.url, "--cp-id", "CP1", "--meter-interval", "0.05",
        "--meter-samples", "100000",
    )  # fmt: skip
    await csms.wait_for("CP1", "Heartbeat")

    started = await csms.request(
        "CP1",
        v201.call.RequestStartTransaction(
            id_token={"id_token": "REMOTE1", "type": "Central"}, remote_start_id=7
        ),
    )
    assert started.status == "Accepted"
    await until(
        lambda: any(e["eventType"] == "Updated" for e in csms.payloads("CP1", "TransactionEvent")),
        what="a running transaction",
    )
    first = csms.payloads("CP1", "TransactionEvent")[0]
    assert first["eventType"] == "Started"
    assert first["triggerReason"] == "RemoteStart"
    assert first["transactionInfo"]["remoteStartId"] == 7
    transaction_id = first["transactionInfo"]["transactionId"]

    busy = await csms.request(
        "CP1",
        v201.call.RequestStartTransaction(
            id_token={"id_token": "REMOTE2", "type": "Central"}, remote_start_id=8
        ),
    )
    assert busy.status == "Rejected"
    wrong = await csms.request("CP1", v201.call.RequestStopTransaction(transaction_id="nope"))
    assert wrong.status == "Rejected"
    stopped = await csms.request(
        "CP1", v201.call.RequestStopTransaction(transaction_id=transaction_id)
    )
    assert stopped.status == "Accepted"
    await until(
        lambda: csms.payloads("CP1", "TransactionEvent")[-1]["eventType"] == "Ended",
        what="the transaction's end",
    )
    ended = csms.payloads("CP1", "TransactionEvent")[-1]
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    await until(lambda: statuses_201(csms, "CP1")[-1:] == ["Available"], what="Available")
    assert csms.errors_sent == []
    assert await cp.interrupt() == 0


async def test_csms_changes_availability_201(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator("--url", csms.url, "--cp-id", "CP1")
    await csms.wait_for("CP1", "Heartbeat")
    answer = await csms.request(
        "CP1", v201.call.ChangeAvailability(operational_status="Inoperative")
    )
    assert answer.status == "Accepted"
    await csms.wait_for("CP1", "StatusNotification")
    assert statuses_201(csms, "CP1") == ["Unavailable"]
    refused = await csms.request(
        "CP1",
        v201.call.RequestStartTransaction(
            id_token={"id_token": "REMOTE1", "type": "Central"}, remote_start_id=1
        ),
    )
    assert refused.status == "Rejected"
    assert await cp.interrupt() == 0


async def test_csms_drives_an_ocpp16_charge_point(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator(
        "--url", csms.url, "--cp-id", "CP16", "--ocpp", "1.6", "--meter-interval", "0.05",
        "--meter-samples", "100000",
    )  # fmt: skip
    await csms.wait_for("CP16", "Heartbeat")

    configuration = await csms.request(
        "CP16", v16.call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"])
    )
    assert configuration.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "10"}
    ]
    assert configuration.unknown_key == ["NoSuchKey"]
    changed = await csms.request(
        "CP16", v16.call.ChangeConfiguration(key="HeartbeatInterval", value="30")
    )
    assert changed.status == "Accepted"
    refused = await csms.request(
        "CP16", v16.call.ChangeConfiguration(key="NumberOfConnectors", value="2")
    )
    assert refused.status == "Rejected"
    unknown = await csms.request("CP16", v16.call.ChangeConfiguration(key="Nope", value="1"))
    assert unknown.status == "NotSupported"

    triggered = await csms.request(
        "CP16", v16.call.TriggerMessage(requested_message="StatusNotification")
    )
    assert triggered.status == "Accepted"
    await csms.wait_for("CP16", "StatusNotification")

    started = await csms.request("CP16", v16.call.RemoteStartTransaction(id_tag="REMOTE16"))
    assert started.status == "Accepted"
    await csms.wait_for("CP16", "MeterValues")
    stopped = await csms.request("CP16", v16.call.RemoteStopTransaction(transaction_id=1))
    assert stopped.status == "Accepted"
    [stop] = await csms.wait_for("CP16", "StopTransaction")
    assert stop["reason"] == "Remote"

    reset = await csms.request("CP16", v16.call.Reset(type="Soft"))
    assert reset.status == "Accepted"
    await csms.wait_for("CP16", "BootNotification", count=2)
    assert csms.connections["CP16"] == 2
    assert csms.errors_sent == []
    assert await cp.interrupt() == 0


async def test_boot_is_retried_at_the_interval_until_accepted(simulator: Start) -> None:
    async with OcppCsms(boot_status="Rejected", heartbeat_interval=1) as csms:
        cp = await simulator("--url", csms.url, "--cp-id", "CP1", "--heartbeats", "1")
        await csms.wait_for("CP1", "BootNotification", count=2)
        csms.boot_status = "Accepted"
        assert await cp.wait() == 0, cp.output
    assert csms.actions("CP1", without=())[-2:] == ["BootNotification", "Heartbeat"]
    assert (
        "WARNING:root:CP1: central system answered BootNotification with Rejected; retrying in 1 s"
    ) in cp.lines
    assert csms.connections["CP1"] == 1


async def test_ocpp21_station_boots_and_answers_the_csms(csms: OcppCsms, simulator: Start) -> None:
    cp = await simulator(
        "--url", csms.url, "--cp-id", "CP21", "--ocpp", "2.1", "--scenario", *QUICK_SESSION,
    )  # fmt: skip
    await csms.wait_for("CP21", "Heartbeat")
    await until(
        lambda: (
            csms.payloads("CP21", "TransactionEvent")[-1:] != []
            and csms.payloads("CP21", "TransactionEvent")[-1]["eventType"] == "Ended"
        ),
        what="the scenario's transaction",
    )
    [boot] = csms.payloads("CP21", "BootNotification")
    assert boot["chargingStation"]["vendorName"] == "Acme Electrical Systems"

    variables = await csms.request(
        "CP21",
        v21.call.GetVariables(
            get_variable_data=[{"component": {"name": "OCPPCommCtrlr"},
                                "variable": {"name": "HeartbeatInterval"}}]
        ),
    )  # fmt: skip
    assert variables.get_variable_result[0]["attribute_status"] == "Accepted"
    started = await csms.request(
        "CP21",
        v21.call.RequestStartTransaction(
            id_token={"id_token": "REMOTE1", "type": "Central"}, remote_start_id=1
        ),
    )
    assert started.status == "Accepted"
    reset = await csms.request("CP21", v21.call.Reset(type="OnIdle"))
    assert reset.status in {"Accepted", "Scheduled"}
    assert csms.errors_sent == []
    assert await cp.interrupt() == 0
    assert "Traceback" not in cp.output
