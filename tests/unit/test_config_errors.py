import pytest
from pydantic import SecretStr, ValidationError

from gateway.config_errors import (
    broker_url_problem,
    describe_validation_error,
    mask,
    secrets_in,
    secrets_of_url,
    variable_names,
)
from gateway.settings import Settings

SECRET = "Sup3rS3cr3tPW"


def validation_error(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
    return refused.value


def test_field_errors_name_the_variable() -> None:
    line = describe_validation_error(validation_error(qos=7, registry="nope"), Settings)
    assert "GATEWAY_QOS: Input should be less than or equal to 1" in line
    assert "GATEWAY_REGISTRY: Input should be 'file'" in line
    assert "\n" not in line


def test_aliases_are_named_too() -> None:
    assert variable_names(Settings, "port") == "GATEWAY_PORT (or OCPP_GATEWAY_PORT)"
    assert variable_names(Settings, "GATEWAY_PORT") == "GATEWAY_PORT (or OCPP_GATEWAY_PORT)"
    assert variable_names(Settings, "mqtt_url") == "GATEWAY_MQTT_URL"


def test_checks_across_settings_keep_their_own_words() -> None:
    line = describe_validation_error(validation_error(mqtt_key_pem=SECRET), Settings)
    assert line.startswith("a client certificate needs its private key")
    assert SECRET not in line


@pytest.mark.parametrize(
    "url",
    [
        f"mqtt://u:{SECRET}@:bad",
        f"mqtt://u:{SECRET}@host:99999",
        f"http://u:{SECRET}@host",
        f"mqtt://{SECRET}@",
    ],
)
def test_broker_url_problems_never_show_the_password(url: str) -> None:
    problem = broker_url_problem(url)
    assert problem is not None
    assert SECRET not in problem
    assert "***" in problem


def test_good_broker_urls_have_no_problem() -> None:
    assert broker_url_problem(f"mqtts://u:{SECRET}@broker.example:8883") is None


def test_secrets_come_from_urls_and_key_material() -> None:
    assert secrets_of_url(f"mqtt://u:{SECRET}@h") == [f"u:{SECRET}", SECRET]
    assert secrets_of_url("mqtt://h:1883") == []
    environment = {"GATEWAY_MQTT_URL": f"mqtt://u:{SECRET}@h", "GATEWAY_MQTT_KEY_PEM": "KEY"}
    found = secrets_in(environment, [SecretStr("PEM"), "mqtt://a:b@c"])
    assert set(found) == {f"u:{SECRET}", SECRET, "KEY", "PEM", "a:b", "b"}


def test_mask_makes_one_line() -> None:
    assert mask(f"bad\n  url mqtt://u:{SECRET}@x", [SECRET]) == "bad url mqtt://u:***@x"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"topic_in": "{cpid}/in"}, "GATEWAY_TOPIC_IN: only {cp_id} can be filled in, not {cpid}"),
        ({"topic_out": "{0}/out"}, "GATEWAY_TOPIC_OUT: only {cp_id} can be filled in, not {0}"),
        ({"topic_in": "{cp_id!r}/in"}, "GATEWAY_TOPIC_IN: {cp_id} takes no format spec"),
        ({"topic_claim": "claims/{cp_id"}, "GATEWAY_TOPIC_CLAIM: not a valid template"),
        ({"topic_out": "csms/out"}, "GATEWAY_TOPIC_OUT: must contain {cp_id}, or every charge"),
        ({"topic_presence": "{cp_id}/+"}, "GATEWAY_TOPIC_PRESENCE: `+` and `#` are wildcards"),
        ({"topic_undelivered": "{cp_id}/#"}, "GATEWAY_TOPIC_UNDELIVERED: `+` and `#` are wild"),
        ({"topic_gateway": "gateways/one"}, "GATEWAY_TOPIC_GATEWAY: must contain {gateway_id}"),
        ({"topic_gateway": "gw/{cp_id}"}, "GATEWAY_TOPIC_GATEWAY: only {gateway_id} can be"),
        (
            {"topic_presence": "{cp_id}/in"},
            "GATEWAY_TOPIC_IN and GATEWAY_TOPIC_PRESENCE are both {cp_id}/in",
        ),
    ],
)
def test_unusable_topic_templates_name_the_variable(values: dict[str, str], problem: str) -> None:
    line = describe_validation_error(validation_error(**values), Settings)
    assert line.startswith(problem), line


def test_topic_templates_that_work() -> None:
    settings = Settings(
        _env_file=None,
        topic_in="ocpp/{cp_id}/up",
        topic_out="ocpp/{cp_id}/down",
        topic_presence="{{literal}}/{cp_id}",
        topic_gateway="site-a/gateways/{gateway_id}/status",
    )
    assert settings.topic_in.format(cp_id="CP1") == "ocpp/CP1/up"
    assert settings.topic_presence.format(cp_id="CP1") == "{literal}/CP1"
