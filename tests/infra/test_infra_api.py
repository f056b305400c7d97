"""The infra API without servers of its own: errors, client settings and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

import infra
from config import ConfigError, KafkaConfig, Settings, load_settings
from infra.process import free_port


def _settings(home: Path, **update: object) -> Settings:
    base = load_settings()
    fields = {"home": home, "kafka": KafkaConfig(), **update}
    for name in ("redis", "postgres"):
        fields.setdefault(name, getattr(base, name).model_copy(update={"url": None}))
    return base.model_copy(update=fields)


def test_endpoints_of_a_home_where_nothing_runs_says_to_run_up(tmp_path: Path) -> None:
    with pytest.raises(infra.InfraNotRunningError, match=r"run `cryptiq infra up`"):
        infra.endpoints(_settings(tmp_path))


def test_down_where_nothing_runs_stops_nothing(tmp_path: Path) -> None:
    assert infra.down(_settings(tmp_path)) == []


def test_an_external_redis_that_does_not_answer_stops_up_and_names_the_setting(tmp_path: Path) -> None:
    base = _settings(tmp_path)
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    settings = base.model_copy(update={"redis": base.redis.model_copy(update={"url": SecretStr(url)})})
    try:
        with pytest.raises(infra.ServerNotAnsweringError) as caught:
            infra.up(settings)
    finally:
        infra.down(settings)
    message = str(caught.value)
    assert "CRYPTIQ_REDIS_URL" in message
    assert "***" in message
    assert "hunter2" not in message
    assert not (tmp_path / "infra.json").exists()  # nothing was started


def test_kafka_client_kwargs_carry_sasl_credentials() -> None:
    config = KafkaConfig(
        bootstrap="broker:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="desk",
        sasl_password=SecretStr("s3cret"),
        client_id="cryptiq-test",
    )
    kwargs = infra.kafka_client_kwargs(config, "broker:9093")
    assert kwargs == {
        "bootstrap_servers": "broker:9093",
        "client_id": "cryptiq-test",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "desk",
        "sasl_plain_password": "s3cret",
    }


def test_kafka_client_kwargs_refuse_sasl_without_credentials() -> None:
    config = KafkaConfig(bootstrap="broker:9093", security_protocol="SASL_SSL", sasl_mechanism="PLAIN")
    with pytest.raises(ConfigError, match="CRYPTIQ_KAFKA_SASL_USERNAME"):
        infra.kafka_client_kwargs(config, "broker:9093")


def test_kafka_client_kwargs_build_a_tls_context() -> None:
    kwargs = infra.kafka_client_kwargs(KafkaConfig(security_protocol="SSL"), "broker:9093")
    assert kwargs["ssl_context"].check_hostname is True


def test_embedded_kafka_refuses_a_secured_protocol(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka=KafkaConfig(security_protocol="SSL"))
    try:
        with pytest.raises(ConfigError, match="CRYPTIQ_KAFKA_BOOTSTRAP"):
            infra.up(settings)
    finally:
        infra.down(settings)


def test_endpoints_repr_hides_passwords_and_gives_the_sqlalchemy_url() -> None:
    endpoints = infra.Endpoints(
        kafka_bootstrap="k:9092",
        redis_url="redis://:pw1@r:6379/0",
        postgres_url="postgresql://u:pw2@db:5432/cryptiq",
        kafka_embedded=False,
        redis_embedded=False,
        postgres_embedded=False,
    )
    assert "pw1" not in repr(endpoints)
    assert "pw2" not in repr(endpoints)
    assert endpoints.postgres_sqlalchemy_url == "postgresql+asyncpg://u:pw2@db:5432/cryptiq"
