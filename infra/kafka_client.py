"""`kafka_client_kwargs`: the one place that turns `KafkaConfig` into aiokafka keyword arguments.

Producers, consumers, admin clients and readiness probes all build their clients from this
dict, so SASL and TLS settings are honoured everywhere or nowhere.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.consumer import group_coordinator
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

from config.errors import ConfigError
from config.settings import KafkaConfig, env_name, reveal

_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def kafka_client_kwargs(config: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (AIOKafkaProducer, AIOKafkaConsumer, admin).

    Raises `ConfigError` if SASL is asked for without a mechanism or credentials, or if a TLS
    file cannot be read.
    """
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in _SASL_PROTOCOLS:
        kwargs.update(_sasl_kwargs(config))
    if config.security_protocol in _SSL_PROTOCOLS:
        kwargs["ssl_context"] = ssl_context_of(config)
    return kwargs


def _sasl_kwargs(config: KafkaConfig) -> dict[str, Any]:
    missing = [
        key
        for key, value in (
            ("sasl_mechanism", config.sasl_mechanism),
            ("sasl_username", config.sasl_username),
            ("sasl_password", config.sasl_password),
        )
        if value is None
    ]
    if missing:
        names = ", ".join(f"kafka.{key} ({env_name(('kafka', key))})" for key in missing)
        raise ConfigError(
            f"kafka.security_protocol={config.security_protocol} needs {names}: set them or use PLAINTEXT/SSL"
        )
    return {
        "sasl_mechanism": config.sasl_mechanism,
        "sasl_plain_username": config.sasl_username,
        "sasl_plain_password": reveal(config.sasl_password),
    }


def ssl_context_of(config: KafkaConfig) -> ssl.SSLContext:
    """The TLS context for `config`'s CA and client certificate files (ConfigError if unusable)."""
    for key, path in (
        ("ssl_cafile", config.ssl_cafile),
        ("ssl_certfile", config.ssl_certfile),
        ("ssl_keyfile", config.ssl_keyfile),
    ):
        if path is not None and not Path(path).is_file():
            raise ConfigError(
                f"kafka.{key} = {path} is not a readable file: fix the path ({env_name(('kafka', key))})"
            )
    if config.ssl_keyfile is not None and config.ssl_certfile is None:
        raise ConfigError(
            "kafka.ssl_keyfile is set without kafka.ssl_certfile: set both for client certificates"
        )
    try:
        return create_ssl_context(
            cafile=str(config.ssl_cafile) if config.ssl_cafile else None,
            certfile=str(config.ssl_certfile) if config.ssl_certfile else None,
            keyfile=str(config.ssl_keyfile) if config.ssl_keyfile else None,
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"kafka TLS files cannot be loaded ({exc}): check kafka.ssl_cafile, ssl_certfile and ssl_keyfile"
        ) from exc


def install_leave_group_fix() -> None:
    """Make aiokafka leave its group on close even in generation 0 (idempotent, process-wide).

    aiokafka sends LeaveGroup only when `generation > 0`, because Apache Kafka numbers
    generations from 1. Tansu numbers them from 0, so a consumer of the first generation closed
    silently and a restarted agent waited a whole session timeout for the broker to notice (9 s
    instead of 3 s). Leaving is right on every broker: a member that has joined has a
    generation >= 0 and a member id.
    """
    group_coordinator.GroupCoordinator._maybe_leave_group = _leave_group_if_joined  # type: ignore[method-assign]


async def _leave_group_if_joined(self: Any) -> None:
    """aiokafka's `_maybe_leave_group`, with `generation > 0` relaxed to a joined member."""
    joined = self.generation >= 0 and self.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID
    if joined and self._group_instance_id is None:
        try:
            await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
        except kafka_errors.KafkaError as err:
            group_coordinator.log.error("LeaveGroup request failed: %s", err)
        else:
            group_coordinator.log.info("LeaveGroup request succeeded")
    self.reset_generation()
