"""Gateway configuration, read from environment variables and an optional `.env` file.

Names are prefixed `GATEWAY_`; the AWS sample's names (`OCPP_PROTOCOLS`, `OCPP_GATEWAY_PORT`,
`IOT_ENDPOINT`, `IOT_PORT`, `AWS_REGION`) are accepted as aliases so existing deployments keep
working.
"""

from __future__ import annotations

import importlib.util
import string
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class RegistryBackend(StrEnum):
    FILE = "file"
    STATIC = "static"
    ALLOW_ALL = "allow-all"
    AWS_IOT = "aws-iot"
    DYNAMODB = "dynamodb"  # a DynamoDB table mirroring the Things, keyed by `chargePointId`


class UnknownIdResponse(StrEnum):
    """How a valid but unregistered charge point id is refused."""

    CLOSE_1008 = "close-1008"
    HTTP_404 = "http-404"


class LinkMode(StrEnum):
    PER_CP = "per-cp"  # one MQTT client per CP, client id = cpId (AWS-compatible)
    SHARED = "shared"  # one MQTT client per gateway, one subscription per connected CP


class LinkImpl(StrEnum):
    """The MQTT client library behind the broker link."""

    AIOMQTT = "aiomqtt"
    AWSCRT = "awscrt"  # the AWS IoT Device SDK's MQTT 5 client (awsiotsdk / awscrt)


def fastest_link_impl() -> LinkImpl:
    """The CRT where it is installed (the `aws` extra, the container image): a third of paho's
    CPU per message and a faster connect; else aiomqtt, which the gateway always has."""
    return LinkImpl.AWSCRT if importlib.util.find_spec("awscrt") is not None else LinkImpl.AIOMQTT


class MqttAuth(StrEnum):
    """How the gateway proves its identity to the broker."""

    # TLS as the URL says (`mqtts://`), with a client certificate when one is configured.
    CERTIFICATE = "certificate"
    # awscrt only: MQTT over WebSockets signed with the default AWS credential chain.
    SIGV4 = "sigv4"


class SecurityProfile(IntEnum):
    """How charge points prove who they are (OCPP 2.0.1 Part 2 A00; 1.6 security whitepaper)."""

    NONE = 0  # no authentication (today's behaviour); TLS when a certificate is configured
    BASIC = 1  # HTTP Basic auth, user = cpId, over plain ws://
    TLS_BASIC = 2  # HTTP Basic auth over wss://
    TLS_CLIENT_CERT = 3  # wss:// with a client certificate whose subject CN is the cpId


# Published by AWS IoT when a Thing is deleted (registry events must be enabled in the account).
THING_DELETED_TOPIC = "$aws/events/thing/+/deleted"


def topic_filter_problem(topic_filter: str) -> str | None:
    """What makes `topic_filter` an invalid MQTT subscription, or None when it is valid."""
    levels = topic_filter.split("/")
    for position, level in enumerate(levels):
        if "#" in level and (level != "#" or position != len(levels) - 1):
            return "`#` must be a whole level, and the last one"
        if "+" in level and level != "+":
            return "`+` must be a whole level"
    if len(topic_filter.encode()) > 65535:
        return "longer than 65535 bytes"
    return None


# The topic templates filled in with each charge point's id.
CP_TOPICS = ("topic_in", "topic_out", "topic_claim", "topic_presence", "topic_undelivered")
_TOPIC_OWNERS = {"cp_id": "charge point", "gateway_id": "gateway"}


def topic_template_problem(template: str, placeholder: str) -> str | None:
    """What makes `template` unusable as a topic name once `{placeholder}` is filled in, or None.

    The template must name `{placeholder}` (without it every charge point, or every replica,
    would share one topic) and nothing else, and must not hold the wildcards `+` and `#`, which
    MQTT allows in subscriptions only.
    """
    wanted = "{" + placeholder + "}"
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        return f"not a valid template ({exc}); a literal brace is written {{{{ or }}}}"
    for name, spec, conversion in fields:
        if name != placeholder:
            return f"only {wanted} can be filled in, not {{{name}}}"
        if spec or conversion:
            return f"{wanted} takes no format spec or conversion"
    if not fields:
        owner = _TOPIC_OWNERS.get(placeholder, placeholder)
        return f"must contain {wanted}, or every {owner} would share one topic"
    if "+" in template or "#" in template:
        return "`+` and `#` are wildcards, not allowed in a topic name"
    return None


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        # Error messages name the setting and the problem, never its value: some are secrets.
        hide_input_in_errors=True,
    )

    # WebSocket server
    host: str = "0.0.0.0"
    port: int = Field(8080, validation_alias=AliasChoices("GATEWAY_PORT", "OCPP_GATEWAY_PORT"))
    path_prefix: str = Field("", description="URL path before the cpId, e.g. `/ocpp`")
    protocols: Annotated[list[str], NoDecode] = Field(
        default=["ocpp2.1", "ocpp2.0.1", "ocpp2.0", "ocpp1.6"],
        validation_alias=AliasChoices("GATEWAY_PROTOCOLS", "OCPP_PROTOCOLS"),
    )
    max_frame_bytes: int = 65536
    compression: bool = True
    ping_interval: float | None = 30.0
    ping_timeout: float | None = 30.0
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    shutdown_timeout: float = 10.0
    max_connections: int | None = Field(
        None,
        ge=1,
        description="beyond this, handshakes get HTTP 503; default: from the open-files limit",
    )
    max_handshakes: int = Field(
        500, ge=1, description="handshakes in progress at once; beyond this, HTTP 503 at once"
    )
    retry_after_max: float = Field(
        10.0, ge=1, description="a 503's Retry-After is drawn from 1 to this many seconds"
    )
    shutdown_spread: float = Field(
        2.0, ge=0, description="seconds over which SIGTERM's 1012 closes are spread"
    )
    listen_backlog: int = Field(
        4096, ge=1, description="pending TCP connections the kernel queues (capped by somaxconn)"
    )

    # Charge point security (see docs/security.md)
    security_profile: SecurityProfile = Field(
        SecurityProfile.NONE,
        description="0 none, 1 Basic auth, 2 Basic auth over wss://, 3 client certificates",
    )
    tls_cert_file: Path | None = Field(
        None, description="the gateway's own certificate (PEM, chain after it): serve wss://"
    )
    tls_key_file: Path | None = Field(None, description="its private key (PEM, unencrypted)")
    tls_client_ca_file: Path | None = Field(
        None, description="profile 3: CA(s) that sign the charge points' client certificates"
    )
    password_file: Path | None = Field(
        None, description="profiles 1 and 2: `cpId:<hash>` lines, edit with `ocpp-things password`"
    )
    password_file_poll_interval: float = Field(
        1.0, gt=0, description="seconds between checks of the password file for changes"
    )
    auth_failures_per_id: int = Field(
        5, ge=0, description="failed password checks per cpId per window before HTTP 429; 0: off"
    )
    auth_failures_per_address: int = Field(
        50, ge=0, description="failed password checks per source address per window; 0: off"
    )
    auth_failure_window: float = Field(
        60.0, gt=0, description="seconds in which the allowance of failures is restored"
    )

    # Registry
    registry: RegistryBackend = RegistryBackend.FILE
    registry_file: Path = Path("things.txt")
    registry_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    registry_positive_ttl: float = 300.0
    registry_negative_ttl: float = 30.0
    registry_file_poll_interval: float = Field(
        1.0, gt=0, description="seconds between checks of the registry file for changes"
    )
    registry_timeout: float = Field(
        3.0, gt=0, description="seconds a handshake waits for the registry before 1013/503"
    )
    registry_max_concurrency: int = Field(
        16, ge=1, description="aws-iot/dynamodb: registry calls in flight at once, at most"
    )
    registry_max_attempts: int = Field(
        3, ge=1, le=10, description="aws-iot/dynamodb: attempts per lookup (adaptive retry)"
    )
    registry_table: str = Field(
        "", description="dynamodb: the table of registered ids, keyed by `chargePointId`"
    )
    registry_consistent_read: bool = Field(
        False, description="dynamodb: strongly consistent reads (twice the read capacity)"
    )
    registry_events_topic: str = Field(
        "",
        description="topic of Thing-deleted events; default `$aws/events/thing/+/deleted` "
        "with aws-iot and dynamodb; empty: off",
    )
    registry_mirror: bool = Field(
        True,
        description="aws-iot/dynamodb: keep a copy of every registered id (read at start, "
        "then re-read), so known ids connect without an AWS call",
    )
    registry_resync_interval: float = Field(
        300.0,
        ge=0,
        description="aws-iot/dynamodb mirror: seconds between re-reads; 0: at start only",
    )
    aws_endpoint_url: str | None = Field(
        None, description="aws-iot/dynamodb: AWS endpoint for registry lookups, e.g. an emulator"
    )
    unknown_id_response: UnknownIdResponse = UnknownIdResponse.CLOSE_1008
    registry_revalidate_interval: float = Field(
        30.0,
        ge=0,
        description="seconds between re-checks of connected CPs; unknown ones close 1008; 0: off",
    )

    # Broker
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    link_mode: LinkMode = LinkMode.PER_CP
    link_impl: LinkImpl = Field(default_factory=fastest_link_impl)
    mqtt_auth: MqttAuth = MqttAuth.CERTIFICATE
    # TLS material: a file path, or the PEM text itself (as ECS injects secrets), not both.
    mqtt_ca_file: Path | None = Field(
        None, description="CA that signs the broker's certificate; default: the system's CAs"
    )
    mqtt_cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    mqtt_key_file: Path | None = Field(None, description="the client certificate's private key")
    mqtt_ca_pem: SecretStr | None = None
    mqtt_cert_pem: SecretStr | None = None
    mqtt_key_pem: SecretStr | None = None
    mqtt_alpn: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="TLS ALPN protocols, e.g. `x-amzn-mqtt-ca` for MQTT on port 443 of AWS IoT",
    )
    topic_in: str = "{cp_id}/in"
    topic_out: str = "{cp_id}/out"
    qos: int = Field(1, ge=0, le=1)
    mqtt_timeout: float = 5.0
    mqtt_keepalive: int = 60
    broker_grace: float = Field(
        10.0, description="seconds frames are held while the broker link reconnects"
    )
    topic_claim: str = Field(
        "ocpp-gateway/claims/{cp_id}",
        description="shared link: where replicas announce which one holds a CP",
    )
    topic_gateway: str = Field(
        "ocpp-gateway/gateways/{gateway_id}",
        description="the gateway's own topic; its liveness checks of the broker are published here",
    )
    topic_presence: str = Field(
        "{cp_id}/presence",
        description="retained presence documents: connected or not, which gateway, close code",
    )
    topic_undelivered: str = Field(
        "{cp_id}/undelivered",
        description="notices of messages from `<cpId>/out` that could not reach the CP",
    )
    out_queue_limit: int = Field(
        1000, ge=1, description="messages waiting for a slow CP before new ones are dropped"
    )
    shared_max_subscriptions: int | None = Field(
        None,
        ge=0,
        description="shared link: subscriptions per broker connection (2 per CP) before another "
        "connection is opened; default 50 on AWS IoT Core, 0 (no limit) elsewhere",
    )
    write_timeout: float = Field(
        30.0, gt=0, description="a CP whose socket takes longer to accept one message is closed"
    )
    backpressure_seconds: float = Field(
        1.0,
        gt=0,
        description="a CP frame waiting longer than this for the broker counts as backpressure",
    )

    # AWS (names from the AWS sample)
    iot_endpoint: str | None = Field(None, validation_alias=AliasChoices("IOT_ENDPOINT"))
    iot_port: int = Field(8883, validation_alias=AliasChoices("IOT_PORT"))
    aws_region: str | None = Field(None, validation_alias=AliasChoices("AWS_REGION"))

    # Connected-CP API (off unless a token is set; see gateway/admin)
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the connected-CP API; unset: the API is off"
    )
    admin_port: int | None = Field(
        None, ge=0, le=65535, description="port of the connected-CP API (0: any free port)"
    )
    admin_host: str = Field("127.0.0.1", description="address the connected-CP API binds")

    # Observability
    log_level: str = "INFO"
    log_format: str = Field("auto", description="`json`, `console` or `auto` (console on a TTY)")
    gateway_id: str = Field("", description="this replica's name in logs; defaults to host:pid")

    _split_protocols = field_validator("protocols", "registry_ids", mode="before")(_split_csv)
    _split_alpn = field_validator("mqtt_alpn", mode="before")(_split_csv)

    @model_validator(mode="after")
    def _default_registry_events_topic(self) -> Self:
        """AWS registries listen for Thing-deleted events unless the topic is set (even empty)."""
        if "registry_events_topic" not in self.model_fields_set and self.registry in {
            RegistryBackend.AWS_IOT,
            RegistryBackend.DYNAMODB,
        }:
            self.registry_events_topic = THING_DELETED_TOPIC
        return self

    @field_validator("registry_events_topic")
    @classmethod
    def _check_events_topic(cls, value: str) -> str:
        value = value.strip()
        problem = topic_filter_problem(value) if value else None
        if problem is not None:
            raise ValueError(
                f"GATEWAY_REGISTRY_EVENTS_TOPIC is not a valid MQTT topic filter: {problem}"
            )
        return value

    @field_validator(*CP_TOPICS)
    @classmethod
    def _check_cp_topic(cls, value: str) -> str:
        problem = topic_template_problem(value, "cp_id")
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("topic_gateway")
    @classmethod
    def _check_gateway_topic(cls, value: str) -> str:
        problem = topic_template_problem(value, "gateway_id")
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_topics_differ(self) -> Self:
        """Two kinds of message on one topic would be read as each other (presence as frames)."""
        seen: dict[str, str] = {}
        for name in CP_TOPICS:
            template = getattr(self, name)
            if template in seen:
                raise ValueError(
                    f"GATEWAY_{seen[template].upper()} and GATEWAY_{name.upper()} are both "
                    f"{template}: each kind of message needs its own topic"
                )
            seen[template] = name
        return self

    @model_validator(mode="after")
    def _broker_from_iot_endpoint(self) -> Self:
        """`IOT_ENDPOINT` (and `IOT_PORT`) name the broker unless `GATEWAY_MQTT_URL` is given."""
        if self.iot_endpoint and "mqtt_url" not in self.model_fields_set:
            port = self.iot_port
            if self.mqtt_auth is MqttAuth.SIGV4 and "iot_port" not in self.model_fields_set:
                port = 443  # AWS IoT Core serves MQTT over WebSockets on 443 only
            self.mqtt_url = f"mqtts://{self.iot_endpoint}:{port}"
        return self

    @model_validator(mode="after")
    def _check_broker_security(self) -> Self:
        problems = broker_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _check_admin_api(self) -> Self:
        problems = admin_api_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _check_cp_security(self) -> Self:
        problems = cp_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("shared_max_subscriptions")
    @classmethod
    def _check_shared_max_subscriptions(cls, value: int | None) -> int | None:
        if value == 1:
            raise ValueError(
                "GATEWAY_SHARED_MAX_SUBSCRIPTIONS=1 leaves no room for a CP, which needs 2 "
                "(its /out topic and its claim topic): set 2 or more, or 0 for no limit"
            )
        return value

    @field_validator("path_prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"/{value}" if value else ""


MIN_ADMIN_TOKEN_LENGTH = 16


def admin_api_problems(settings: Settings) -> list[str]:
    """Contradictions in the connected-CP API's settings, each with the fix."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    problems = []
    if token is not None and len(token.strip()) < MIN_ADMIN_TOKEN_LENGTH:
        problems.append(
            f"GATEWAY_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters: generate "
            "one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if token is not None and settings.admin_port is None:
        problems.append(
            "GATEWAY_ADMIN_TOKEN is set but GATEWAY_ADMIN_PORT is not: the connected-CP API "
            "has its own port (e.g. 8090), bound to GATEWAY_ADMIN_HOST (127.0.0.1 by default)"
        )
    if token is None and settings.admin_port is not None:
        problems.append(
            "GATEWAY_ADMIN_PORT is set but GATEWAY_ADMIN_TOKEN is not: the connected-CP API "
            "needs a bearer token"
        )
    return problems


def broker_security_problems(settings: Settings) -> list[str]:
    """Contradictions in the broker's TLS and authentication settings, each with the fix."""
    problems = []
    for item in ("ca", "cert", "key"):
        if getattr(settings, f"mqtt_{item}_file") and getattr(settings, f"mqtt_{item}_pem"):
            name = f"GATEWAY_MQTT_{item.upper()}"
            problems.append(f"set {name}_FILE or {name}_PEM, not both")
    has_cert = bool(settings.mqtt_cert_file or settings.mqtt_cert_pem)
    has_key = bool(settings.mqtt_key_file or settings.mqtt_key_pem)
    if has_cert != has_key:
        given, missing = ("CERT", "KEY") if has_cert else ("KEY", "CERT")
        problems.append(
            f"a client certificate needs its private key: GATEWAY_MQTT_{given}_FILE/_PEM is set "
            f"but GATEWAY_MQTT_{missing}_FILE/_PEM is not"
        )
    uses_tls_options = has_cert or has_key or settings.mqtt_ca_file or settings.mqtt_ca_pem
    if settings.mqtt_url.startswith("mqtt://") and (uses_tls_options or settings.mqtt_alpn):
        problems.append(
            "TLS options are set but GATEWAY_MQTT_URL is plain mqtt://: use mqtts://host:port"
        )
    if settings.mqtt_auth is MqttAuth.SIGV4:
        if settings.link_impl is not LinkImpl.AWSCRT:
            problems.append("GATEWAY_MQTT_AUTH=sigv4 needs GATEWAY_LINK_IMPL=awscrt")
        if has_cert or has_key:
            problems.append(
                "GATEWAY_MQTT_AUTH=sigv4 signs with AWS credentials: remove the client certificate"
            )
        if settings.mqtt_alpn:
            problems.append("GATEWAY_MQTT_AUTH=sigv4 chooses its own ALPN: unset GATEWAY_MQTT_ALPN")
        if settings.mqtt_url.startswith("mqtt://"):
            problems.append("GATEWAY_MQTT_AUTH=sigv4 runs over TLS: use mqtts://<endpoint>:443")
    return problems


def cp_security_problems(settings: Settings) -> list[str]:
    """Contradictions between the security profile and the TLS and password settings."""
    problems = []
    profile = settings.security_profile
    has_cert, has_key = settings.tls_cert_file is not None, settings.tls_key_file is not None
    if has_cert != has_key:
        given, missing = ("CERT", "KEY") if has_cert else ("KEY", "CERT")
        problems.append(
            f"the gateway's certificate needs its private key: GATEWAY_TLS_{given}_FILE is set "
            f"but GATEWAY_TLS_{missing}_FILE is not"
        )
    uses_passwords = profile in {SecurityProfile.BASIC, SecurityProfile.TLS_BASIC}
    if uses_passwords and settings.password_file is None:
        problems.append(
            f"GATEWAY_SECURITY_PROFILE={profile.value} checks passwords: set GATEWAY_PASSWORD_FILE "
            "(edit it with `ocpp-things password <cpId>`)"
        )
    if not uses_passwords and settings.password_file is not None:
        problems.append(
            f"GATEWAY_PASSWORD_FILE is set but GATEWAY_SECURITY_PROFILE={profile.value} does not "
            "check passwords: use profile 1 (ws://) or 2 (wss://), or unset it"
        )
    if profile is SecurityProfile.BASIC and has_cert:
        problems.append(
            "GATEWAY_SECURITY_PROFILE=1 is Basic auth over plain ws://; with "
            "GATEWAY_TLS_CERT_FILE it is profile 2"
        )
    if profile in {SecurityProfile.TLS_BASIC, SecurityProfile.TLS_CLIENT_CERT} and not (
        has_cert or has_key
    ):
        problems.append(
            f"GATEWAY_SECURITY_PROFILE={profile.value} serves wss://: set GATEWAY_TLS_CERT_FILE "
            "and GATEWAY_TLS_KEY_FILE"
        )
    has_client_ca = settings.tls_client_ca_file is not None
    if profile is SecurityProfile.TLS_CLIENT_CERT and not has_client_ca:
        problems.append(
            "GATEWAY_SECURITY_PROFILE=3 checks client certificates: set "
            "GATEWAY_TLS_CLIENT_CA_FILE to the CA that signs them"
        )
    if profile is not SecurityProfile.TLS_CLIENT_CERT and has_client_ca:
        problems.append(
            "GATEWAY_TLS_CLIENT_CA_FILE is set but client certificates are checked with "
            "GATEWAY_SECURITY_PROFILE=3 only"
        )
    return problems
