"""Static and allow-all registries, and choosing the backend from the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.registry import (
    AllowAllRegistry,
    FileRegistry,
    StaticRegistry,
    build_registry,
)
from gateway.registry.aws_iot import AwsIotRegistry
from gateway.registry.mirrored import MirroredRegistry
from gateway.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


async def test_static_registry_answers_from_its_ids() -> None:
    registry = StaticRegistry(["CP1", " CP2 "])
    await registry.start()
    assert await registry.is_registered("CP1")
    assert await registry.is_registered("CP2")
    assert not await registry.is_registered("CP3")
    await registry.close()


async def test_static_registry_skips_invalid_ids_with_a_warning() -> None:
    registry = StaticRegistry(["CP1", "CP#2"])
    with capture_logs() as logs:
        await registry.start()
    assert registry.ids == {"CP1"}
    skipped = next(entry for entry in logs if entry["event"] == "registry.static_id_skipped")
    assert skipped["cp_id"] == "CP#2"


async def test_empty_static_registry_warns_that_everyone_is_refused() -> None:
    with capture_logs() as logs:
        await StaticRegistry([]).start()
    assert logs[0]["event"] == "registry.static_empty"
    assert "GATEWAY_REGISTRY_IDS" in logs[0]["hint"]


def test_static_ids_come_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY", "static")
    monkeypatch.setenv("GATEWAY_REGISTRY_IDS", "CP1, CP2,,")
    registry = build_registry(settings())
    assert isinstance(registry, StaticRegistry)
    assert registry.ids == {"CP1", "CP2"}


async def test_allow_all_registers_everyone_and_warns_at_start() -> None:
    registry = AllowAllRegistry()
    with capture_logs() as logs:
        await registry.start()
    assert await registry.is_registered("anything")
    assert logs[0]["log_level"] == "warning"
    assert "development only" in logs[0]["hint"]


def test_build_file_registry(tmp_path: Path) -> None:
    registry = build_registry(
        settings(registry="file", registry_file=tmp_path / "t.txt", registry_file_poll_interval=2)
    )
    assert isinstance(registry, FileRegistry)
    assert (registry.path, registry.poll_interval) == (tmp_path / "t.txt", 2)


def test_file_is_the_default_backend() -> None:
    assert isinstance(build_registry(settings()), FileRegistry)


def test_build_allow_all_registry() -> None:
    assert isinstance(build_registry(settings(registry="allow-all")), AllowAllRegistry)


def test_build_aws_iot_registry_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY", "aws-iot")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("GATEWAY_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("GATEWAY_REGISTRY_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("GATEWAY_REGISTRY_RESYNC_INTERVAL", "60")
    mirrored = build_registry(settings())
    assert isinstance(mirrored, MirroredRegistry)
    assert mirrored.resync_interval == 60
    registry = mirrored.source
    assert isinstance(registry, AwsIotRegistry)
    assert (registry.region, registry.endpoint_url, registry.max_concurrency) == (
        "eu-west-1",
        "http://127.0.0.1:5000",
        4,
    )


def test_without_the_mirror_the_aws_registry_is_used_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REGISTRY", "aws-iot")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("GATEWAY_REGISTRY_MIRROR", "false")
    assert isinstance(build_registry(settings()), AwsIotRegistry)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_REGISTRY", "ldap"),
        ("GATEWAY_REGISTRY_MAX_CONCURRENCY", "0"),
        ("GATEWAY_REGISTRY_FILE_POLL_INTERVAL", "0"),
    ],
)
def test_invalid_registry_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("GATEWAY_").lower()):
        settings()
