"""docker-compose.kafka.yml names only things that exist: settings keys, agents, services.

No Docker engine runs here, so the file is checked by reading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from agents.catalog import AGENTS
from config.settings import ENV_PREFIX, Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.kafka.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def settings_key_exists(variable: str) -> bool:
    """True if CRYPTIQ_SECTION_KEY names a real settings key (or a top-level one)."""
    rest = variable.removeprefix(ENV_PREFIX).lower()
    if rest in Settings.model_fields:
        return True
    section, _, key = rest.partition("_")
    field = Settings.model_fields.get(section)
    if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
        return False
    return key in field.annotation.model_fields


def test_every_cryptiq_variable_is_a_real_settings_key(compose: dict[str, Any]) -> None:
    seen = set()
    for name, service in compose["services"].items():
        for variable in (service.get("environment") or {}):
            if variable.startswith(ENV_PREFIX):
                seen.add(variable)
                assert settings_key_exists(variable), f"service {name}: {variable} is not a settings key"
    assert {"CRYPTIQ_KAFKA_BOOTSTRAP", "CRYPTIQ_REDIS_URL", "CRYPTIQ_POSTGRES_URL"} <= seen


def test_the_checker_itself_rejects_unknown_keys() -> None:
    assert not settings_key_exists("CRYPTIQ_KAFKA_BOOTSTRAPS")
    assert not settings_key_exists("CRYPTIQ_NOPE_URL")
    assert settings_key_exists("CRYPTIQ_HOME")


def test_the_compose_environment_loads_as_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import load_settings

    for variable, value in compose["services"]["agent-echo"]["environment"].items():
        monkeypatch.setenv(variable, str(value))
    settings = load_settings()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.log.format == "json"


def test_infrastructure_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name in ("kafka", "redis", "postgres"):
        assert "healthcheck" in compose["services"][name], name
    assert "KAFKA_PROCESS_ROLES" in compose["services"]["kafka"]["environment"]  # KRaft, no ZooKeeper


def test_one_service_per_agent_and_each_runs_a_real_agent(compose: dict[str, Any]) -> None:
    agent_services = {}
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if command[:2] == ["cryptiq", "agent"]:
            agent_services[command[2]] = name
            depends = service["depends_on"]
            assert depends["kafka"]["condition"] == "service_healthy"
            assert depends["init"]["condition"] == "service_completed_successfully"
    assert set(agent_services) == set(AGENTS)
