"""Configuration errors in one line that names the variable and never shows a secret.

The gateway refuses to start when a setting cannot be used. Its operator reads one line that
says which variable to change and why; the line may end up in a log store, so secrets are
masked: the password in a broker URL and the values of the variables that hold key material.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from gateway.links.broker_url import parse_broker_url

MASK = "***"
# Variables whose whole value is secret; URLs (any `*_URL`) have their user information masked.
SECRET_VARIABLES = frozenset(
    {
        "GATEWAY_MQTT_CA_PEM",
        "GATEWAY_MQTT_CERT_PEM",
        "GATEWAY_MQTT_KEY_PEM",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    }
)
_USER_INFO = re.compile(r"(?<=//)[^/@]*(?=@)")


def describe_validation_error(error: ValidationError, settings_class: type[BaseSettings]) -> str:
    """`VARIABLE: problem; VARIABLE: problem`, for what pydantic-settings refused."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        location = item["loc"]
        if location:
            problems.append(f"{variable_names(settings_class, str(location[0]))}: {message}")
        else:  # a check across settings: its message names the variables itself
            problems.append(message)
    return "; ".join(problems)


def variable_names(settings_class: type[BaseSettings], name: str) -> str:
    """`GATEWAY_PORT (or OCPP_GATEWAY_PORT)` for the field `port` or the variable itself."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        choices = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else []
        if name == field_name or name in choices:
            names = choices if choices else [f"{prefix}{field_name}".upper()]
            if len(names) == 1:
                return names[0]
            return f"{names[0]} (or {', '.join(names[1:])})"
    return name.upper()


def broker_url_problem(url: str) -> str | None:
    """Why the links cannot use `url`, without its password; None when they can."""
    try:
        parse_broker_url(url)
    except ValueError as exc:
        return mask(str(exc), secrets_of_url(url))
    return None


def secrets_of_url(url: str) -> list[str]:
    """The user information of a URL (`user:password`) and its parts, longest first."""
    match = _USER_INFO.search(url)
    if match is None or not match.group():
        return []
    user_info = match.group()
    parts = [user_info, *user_info.split(":", 1)[1:]]
    return sorted({part for part in parts if part}, key=len, reverse=True)


def secrets_in(environment: Mapping[str, str], values: Iterable[Any] = ()) -> list[str]:
    """The secrets a message about this configuration must not show."""
    secrets: set[str] = set()
    for name, value in environment.items():
        upper = name.upper()
        if upper in SECRET_VARIABLES and value:
            secrets.add(value)
        elif upper.endswith("_URL"):
            secrets.update(secrets_of_url(value))
    for value in values:
        if isinstance(value, str) and value:
            secrets.update(secrets_of_url(value))
        elif hasattr(value, "get_secret_value") and value.get_secret_value():
            secrets.add(str(value.get_secret_value()))
    return sorted(secrets, key=len, reverse=True)


def mask(message: str, secrets: Iterable[str]) -> str:
    """`message` on one line, each secret replaced by `***`."""
    for secret in secrets:
        message = message.replace(secret, MASK)
    return " ".join(message.split())
