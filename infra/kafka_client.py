"""`kafka_client_kwargs`: the one place that turns `KafkaConfig` into aiokafka keyword arguments.

Producers, consumers, admin clients and readiness probes all build their clients from this
dict, so SASL and TLS settings are honoured everywhere or nowhere.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

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
        kwargs["ssl_context"] = _ssl_context(config)
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


def _ssl_context(config: KafkaConfig) -> ssl.SSLContext:
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
