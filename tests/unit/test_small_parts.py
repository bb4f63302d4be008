import pytest

from gateway import closes
from gateway.backoff import backoff_delays
from gateway.links.broker_url import parse_broker_url
from gateway.observability import Metrics
from gateway.registry.ids import MAX_CP_ID_LENGTH
from gateway.sessions import SessionTable
from gateway.settings import Settings


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = backoff_delays(initial=0.1, maximum=1.0, jitter=0.0)
    assert [round(next(delays), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_jitter_stays_in_range() -> None:
    delays = backoff_delays(initial=1.0, maximum=1.0, jitter=0.5, uniform=lambda a, b: b)
    assert next(delays) == 1.5


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://localhost", "localhost", 1883, False),
        ("mqtt://10.0.0.1:1884", "10.0.0.1", 1884, False),
        (
            "mqtts://abc-ats.iot.eu-west-1.amazonaws.com",
            "abc-ats.iot.eu-west-1.amazonaws.com",
            8883,
            True,
        ),
    ],
)
def test_broker_urls(url: str, host: str, port: int, tls: bool) -> None:
    address = parse_broker_url(url)
    assert (address.host, address.port, address.tls) == (host, port, tls)


def test_broker_url_credentials_are_not_in_repr() -> None:
    address = parse_broker_url("mqtt://user:s%40cret@broker:1883")
    assert (address.username, address.password) == ("user", "s@cret")
    assert "s@cret" not in repr(address)


@pytest.mark.parametrize("url", ["http://x", "x:1883", "mqtt://", "mqtt://h:notaport"])
def test_bad_broker_urls_say_what_to_use(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        parse_broker_url(url)


def test_close_reasons_fit_in_a_close_frame() -> None:
    longest_id = "X" * MAX_CP_ID_LENGTH
    for close in [
        closes.not_registered(longest_id),
        closes.no_subprotocol(["ocpp2.0.1", "ocpp2.0", "ocpp1.6"]),
        closes.binary_frame(),
        closes.broker_unavailable(),
        closes.registry_unavailable(),
        closes.gateway_restarting(),
    ]:
        assert len(close.reason.encode()) <= 123


def test_unknown_id_reason_is_what_users_see() -> None:
    close = closes.not_registered("CP2")
    assert (close.code, close.reason) == (1008, "Charge Point CP2 not registered as an IoT Thing")


class FakeSession:
    """Only what the table reads: the charge point id."""

    def __init__(self, cp_id: str, publishing_since: float | None = None) -> None:
        self.cp_id = cp_id
        self.publishing_since = publishing_since


def test_session_table_newest_wins_and_old_teardown_keeps_new() -> None:
    table = SessionTable()
    old, new = FakeSession("CP1"), FakeSession("CP1")
    assert table.install(old) is None
    assert table.install(new) is old
    table.remove(old)
    assert table.is_current(new)
    assert len(table) == 1
    table.remove(new)
    assert len(table) == 0


def test_session_table_counts_cps_held_back_longer_than_the_threshold() -> None:
    table = SessionTable()
    for session in (
        FakeSession("READING", None),
        FakeSession("BRIEF", 99.5),
        FakeSession("HELD", 97.0),
        FakeSession("HELD_LONG", 10.0),
    ):
        table.install(session)  # type: ignore[arg-type]
    assert table.held_back(1.0, now=100.0) == 2
    assert table.held_back(100.0, now=100.0) == 0


def test_settings_accept_the_aws_sample_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCPP_PROTOCOLS", "ocpp1.6, ocpp2.0.1")
    monkeypatch.setenv("OCPP_GATEWAY_PORT", "9000")
    monkeypatch.setenv("IOT_ENDPOINT", "abc-ats.iot.eu-west-1.amazonaws.com")
    monkeypatch.setenv("IOT_PORT", "443")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = Settings(_env_file=None)
    assert settings.protocols == ["ocpp1.6", "ocpp2.0.1"]
    assert settings.port == 9000
    assert settings.iot_endpoint == "abc-ats.iot.eu-west-1.amazonaws.com"
    assert settings.iot_port == 443
    assert settings.aws_region == "eu-west-1"


def test_settings_prefix_is_normalised() -> None:
    assert Settings(_env_file=None, path_prefix="ocpp/").path_prefix == "/ocpp"


def test_bridged_frames_are_exposed_as_prometheus_counters() -> None:
    metrics = Metrics()
    metrics.bridged.frames_in += 2
    metrics.bridged.bytes_in += 60
    metrics.bridged.frames_out += 1
    metrics.bridged.bytes_out += 25
    text = metrics.render().decode()
    assert 'ocpp_gateway_frames_total{direction="in"} 2.0' in text
    assert 'ocpp_gateway_frames_total{direction="out"} 1.0' in text
    assert 'ocpp_gateway_frame_bytes_total{direction="in"} 60.0' in text
    assert 'ocpp_gateway_frame_bytes_total{direction="out"} 25.0' in text
