"""Processor configuration, read from environment variables (prefix `PROCESSOR_`) and `.env`."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processor.topics import template_problem


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROCESSOR_", env_file=".env", extra="ignore")

    # Broker: the same URL form as the gateway's (`mqtt://host:port`, `mqtts://host:port`).
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    client_id: str = Field(
        default="", description="MQTT client id, unique per replica; generated when empty"
    )
    share_group: str = Field(
        default="ocpp-processor",
        description="shared subscription group, so replicas split the calls; empty: no sharing",
    )
    topic_in: str = "{cp_id}/in"
    topic_out: str = "{cp_id}/out"
    topic_state: str = Field(default="{cp_id}/state", description="retained state documents")
    topic_gateways: str = Field(
        default="ocpp-gateway/gateways/+",
        description="the gateways' retained status documents (their wills say when one vanished)",
    )
    topic_presence: str = Field(
        default="{cp_id}/presence", description="the gateway's retained presence documents"
    )
    record_state: bool = True
    qos: int = Field(default=1, ge=0, le=1)
    mqtt_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for the broker's acks"
    )
    mqtt_keepalive: int = Field(default=60, ge=5)
    max_in_flight: int = Field(
        default=1000,
        ge=1,
        description="answers published but not yet acknowledged before reading waits",
    )
    tcp_nodelay: bool = Field(
        default=True, description="send each packet at once (low latency) instead of coalescing"
    )
    reconnect_max_delay: float = Field(default=5.0, gt=0)
    session_expiry: int = Field(
        default=30,
        ge=0,
        description="seconds the broker keeps the processor's session (and queues calls for it) "
        "while it reconnects",
    )
    shutdown_timeout: float = Field(default=5.0, ge=0)

    # Answers
    heartbeat_interval: int = Field(
        default=10, ge=1, description="`interval` in BootNotification answers"
    )

    # Live status page (processor/status_page.py)
    http_port: int = Field(
        default=8000, ge=0, le=65535, description="port of the live status page; 0: off"
    )
    http_host: str = Field(default="127.0.0.1", description="address the status page binds")

    # Logs
    log_level: str = "INFO"
    log_format: str = Field(
        default="auto", description="`json`, `console` or `auto` (console on a TTY)"
    )

    @field_validator("topic_in", "topic_out", "topic_state", "topic_presence")
    @classmethod
    def _check_template(cls, value: str) -> str:
        problem = template_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("share_group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        if any(char in value for char in "/+#"):
            raise ValueError("the share group must not contain '/', '+' or '#'")
        return value

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        topics = {self.topic_in, self.topic_out, self.topic_state, self.topic_presence}
        if len(topics) != 4:
            raise ValueError(
                "PROCESSOR_TOPIC_IN, _OUT, _STATE and _PRESENCE must be four different templates"
            )
        return self
