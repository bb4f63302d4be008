"""Command lines of the single charge point and of the fleet: defaults, and clear refusals."""

from __future__ import annotations

import pytest

from simulator import cli
from simulator.fleet import options as fleet_options
from simulator.fleet.limits import OpenFilesLimit, over_limit_message, raise_open_files_limit


def single(*argv: str) -> cli.StationConfig:
    parser = cli.build_parser("simulate.py")
    return cli.config_from_args(parser, parser.parse_args(list(argv)))


def refused(capsys: pytest.CaptureFixture[str], build: object, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        build(*argv)  # type: ignore[operator]
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_single_defaults_are_the_documented_ones() -> None:
    config = single("--cp-id", "CP1")
    assert config.url == "ws://localhost:8080"
    assert config.ocpp_version == "2.0.1"
    assert config.identity.model == "ABC 123 XYZ"
    assert config.identity.vendor == "Acme Electrical Systems"
    assert config.identity.firmware == "10.9.8.ABC"
    assert config.identity.serial == "CP1234567890A01"
    assert config.identity.iccid == "891004234814455936F"
    assert config.identity.imsi == "310410123456789"
    assert config.heartbeat_interval is None
    assert config.heartbeats is None
    assert config.scenario is False
    assert config.session.meter_interval == 10.0
    assert config.reconnect is None
    assert config.password is None
    assert config.compression is True


def test_single_options() -> None:
    config = single(
        "--url", "wss://gw:443/ocpp", "--cp-id", "CP7", "--ocpp", "1.6",
        "--cp-serial", "S1", "--cp-model", "M1", "--cp-version", "F1", "--cp-vendor", "V1",
        "--password", "pw", "--scenario", "--power-kw", "22", "--meter-interval", "0.5",
        "--meter-samples", "3", "--reconnect", "--retry-wait-minimum", "1",
        "--retry-random-range", "0", "--retry-repeat-times", "2", "--heartbeats", "4",
        "--heartbeat-interval", "2.5", "--no-compression",
    )  # fmt: skip
    assert config.ocpp_version == "1.6"
    assert (config.identity.serial, config.identity.model) == ("S1", "M1")
    assert (config.identity.firmware, config.identity.vendor) == ("F1", "V1")
    assert config.password == "pw"
    assert config.security_profile == 2
    assert config.scenario is True
    assert config.session.power_kw == 22.0
    assert config.session.meter_samples == 3
    assert config.reconnect is not None
    assert config.reconnect.fixed_part(1) == 2.0
    assert config.heartbeats == 4
    assert config.heartbeat_interval == 2.5
    assert config.compression is False


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULATOR_PASSWORD", "from-env")
    assert single("--cp-id", "CP1").password == "from-env"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --cp-id"),
        (["--cp-id", "CP1", "--ocpp", "2.0"], "invalid choice: '2.0'"),
        (["--cp-id", "CP1", "--url", "http://h:1"], "--url must look like ws://"),
        (["--cp-id", ""], "the charge point id must not be empty"),
        (["--cp-id", "CP1", "--heartbeat-interval", "0"], "must be > 0, not 0"),
        (["--cp-id", "CP1", "--heartbeat-interval", "soon"], "'soon' is not a number"),
        (["--cp-id", "CP1", "--heartbeats", "-1"], "must be >= 0, not -1"),
        (["--cp-id", "CP1", "--meter-samples", "1.5"], "'1.5' is not an integer"),
        (["--cp-id", "CP1", "--ca-file", "ca.pem"], "need a wss:// URL"),
        (["--cp-id", "CP1", "--cp-model", "M" * 21], "OCPP 2.0.1 allows at most 20"),
        (["--cp-id", "CP1", "--ocpp", "1.6", "--cp-vendor", "V" * 21], "allows at most 20"),
        (["--cp-id", "CP1", "--retry-wait-minimum", "-1"], "must be >= 0, not -1"),
        (["--cp-id", "CP1", "--open-timeout", "nan"], "must be > 0, not nan"),
    ],
)
def test_single_refusals(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert message in refused(capsys, single, *argv)


def fleet(*argv: str) -> fleet_options.FleetPlan:
    parser = fleet_options.build_parser("simulate.py fleet")
    return fleet_options.plan_from_args(parser, parser.parse_args(list(argv)))


def test_fleet_defaults() -> None:
    plan = fleet()
    assert len(plan.cp_ids) == 100
    assert plan.cp_ids[0] == "LOAD00001"
    assert plan.mode == "heartbeat"
    assert plan.compression is False
    assert plan.ping_interval is None
    assert plan.duration_s is None
    assert plan.calls_per_cp is None
    assert plan.reconnect is None
    assert plan.pace(10.0) == 10.0


def test_fleet_options() -> None:
    plan = fleet(
        "--count", "3", "--id-prefix", "SITE-", "--id-start", "7", "--ramp", "0",
        "--concurrency-limit", "5", "--duration", "20", "--calls", "9", "--mode", "closed",
        "--compression", "deflate", "--ping-interval", "15", "--max-failed-calls", "0",
        "--min-connected", "3", "--reconnect", "--ocpp", "1.6",
    )  # fmt: skip
    assert list(plan.cp_ids) == ["SITE-00007", "SITE-00008", "SITE-00009"]
    assert (plan.ramp_per_s, plan.concurrency_limit) == (0.0, 5)
    assert (plan.duration_s, plan.calls_per_cp, plan.mode) == (20.0, 9, "closed")
    assert plan.compression is True
    assert plan.ping_interval == 15.0
    assert plan.thresholds.max_failed_calls == 0
    assert plan.thresholds.min_connected == 3
    assert plan.reconnect is not None
    assert plan.identity.vendor == "Acme Electrical Syst"
    assert plan.pace(10.0) == 0.0


def test_rate_alone_means_rate_mode() -> None:
    plan = fleet("--rate", "4")
    assert plan.mode == "rate"
    assert plan.pace(10.0) == 0.25


def test_heartbeat_interval_overrides_the_csms() -> None:
    assert fleet("--heartbeat-interval", "30").pace(10.0) == 30.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "rate"], "--mode rate needs --rate"),
        (["--mode", "closed", "--rate", "2"], "--rate only applies to --mode rate"),
        (["--count", "0"], "must be >= 1, not 0"),
        (["--id-pattern", "LOAD"], "must contain the field {n} exactly once"),
        (["--id-pattern", "A{n}", "--id-prefix", "B"], "not allowed with argument"),
        (["--url", "tcp://h:1"], "--url must look like ws://"),
        (["--compression", "gzip"], "invalid choice: 'gzip'"),
        (["--client-cert", "c.pem"], "need a wss:// URL"),
        (["--rate", "0"], "must be > 0, not 0"),
    ],
)
def test_fleet_refusals(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert message in refused(capsys, fleet, *argv)


def test_fleet_subcommand_is_dispatched(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["fleet", "--help"], prog="simulate.py")
    assert exited.value.code == 0
    assert "usage: simulate.py fleet" in capsys.readouterr().out


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    limit = raise_open_files_limit()
    assert limit.soft == limit.hard or limit.soft >= 1 << 20
    assert limit.capacity == limit.soft - 64


def test_count_beyond_the_open_files_limit_is_explained() -> None:
    limit = OpenFilesLimit(soft=20_000, hard=20_000)
    assert over_limit_message(19_936, limit) is None
    message = over_limit_message(25_000, limit)
    assert message is not None
    assert message.startswith("--count 25,000 needs about 25,064 open files")
    assert "may open at most 20,000" in message
    assert "lower --count to 19,936 or less, or run several processes" in message
