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
