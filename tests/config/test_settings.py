"""Layering (defaults < YAML < environment), error messages that name key and value, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.settings import redact_url, reveal


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CRYPTIQ_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cryptiq.yaml"
    path.write_text(text)
    return path


def test_defaults_use_embedded_servers() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap is None
    assert settings.redis.url is None
    assert settings.postgres.url is None
    assert settings.agents.batch_size == 1000


def test_yaml_overrides_defaults_and_environment_overrides_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path, "kafka:\n  bootstrap: yamlhost:9092\n  default_partitions: 6\nagents:\n  batch_size: 10\n"
    )
    from_yaml = load_settings(path)
    assert from_yaml.kafka.bootstrap == "yamlhost:9092"
    assert from_yaml.kafka.default_partitions == 6

    monkeypatch.setenv("CRYPTIQ_KAFKA_BOOTSTRAP", "envhost:19092")
    layered = load_settings(path)
    assert layered.kafka.bootstrap == "envhost:19092"  # environment wins
    assert layered.kafka.default_partitions == 6  # untouched keys keep the YAML value
    assert layered.agents.batch_size == 10


def test_config_file_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_CONFIG", str(write(tmp_path, "redis:\n  namespace: desk1\n")))
    assert load_settings().redis.namespace == "desk1"


def test_the_three_endpoint_variables_named_in_the_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("CRYPTIQ_REDIS_URL", "redis://localhost:6380/2")
    monkeypatch.setenv("CRYPTIQ_POSTGRES_URL", "postgresql://u:p@db:5432/x")
    settings = load_settings()
    assert settings.kafka.bootstrap == "k1:9092,k2:9092"
    assert reveal(settings.redis.url) == "redis://localhost:6380/2"
    assert reveal(settings.postgres.url) == "postgresql://u:p@db:5432/x"


def test_bad_value_from_yaml_names_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  security_protocol: TLS\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "kafka.security_protocol" in message
    assert "'TLS'" in message
    assert "SASL_SSL" in message  # what is allowed
    assert str(path) in message


def test_bad_value_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_AGENTS_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "agents.batch_size = 'lots'" in str(info.value)
    assert "CRYPTIQ_AGENTS_BATCH_SIZE" in str(info.value)


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'redis.nmespace'"):
        load_settings(write(tmp_path, "redis:\n  nmespace: x\n"))


def test_bootstrap_must_be_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_KAFKA_BOOTSTRAP", "localhost")
    with pytest.raises(ConfigError, match=r"kafka.bootstrap = 'localhost'.*host:port"):
        load_settings()


def test_broken_yaml_and_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_settings(write(tmp_path, "kafka:\n  bootstrap: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"cannot be read"):
        load_settings(tmp_path / "missing.yaml")


def test_secrets_never_show_in_reprs_or_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_KAFKA_SASL_PASSWORD", "hunter2")
    path = write(
        tmp_path,
        "exchanges:\n  binance:\n    api_key: AKIA-SECRET\n    secret: s3cr3t\n"
        "notifier:\n  telegram_token: tg-123\n",
    )
    settings = load_settings(path)
    text = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("hunter2", "AKIA-SECRET", "s3cr3t", "tg-123"):
        assert secret not in text
    assert reveal(settings.exchanges["binance"].api_key) == "AKIA-SECRET"

    bad = write(tmp_path, "postgres:\n  url: 42\n")
    monkeypatch.setenv("CRYPTIQ_REDIS_URL", "redis://:topsecret@h:1/0")
    monkeypatch.setenv("CRYPTIQ_AGENTS_BATCH_SIZE", "0")
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    assert "topsecret" not in str(info.value)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.kafka.bootstrap = "x:1"  # type: ignore[misc]


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("postgresql://user:pw@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


def test_a_fetch_that_would_never_return_records_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTIQ_AGENTS_FETCH_MAX_WAIT_MS", "0")  # Tansu answers a 0 ms fetch with no records
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "agents.fetch_max_wait_ms = '0'" in str(info.value)
    monkeypatch.setenv("CRYPTIQ_AGENTS_FETCH_MAX_WAIT_MS", "1")
    monkeypatch.setenv("CRYPTIQ_AGENTS_PRODUCER_LINGER_MS", "5")
    settings = load_settings()
    assert (settings.agents.fetch_max_wait_ms, settings.agents.producer_linger_ms) == (1, 5)
