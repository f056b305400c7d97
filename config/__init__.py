"""Typed, layered settings for CryptIQ (defaults < YAML file < environment).

Read once at the composition root (`cli/`) with `load_settings`; everything else is handed
the config object it needs.
"""

from config.errors import ConfigError, CryptiqError, DomainError, RetriableError
from config.settings import (
    AgentsConfig,
    KafkaConfig,
    LogConfig,
    PostgresConfig,
    RedisConfig,
    Settings,
    load_settings,
)

__all__ = [
    "AgentsConfig",
    "ConfigError",
    "CryptiqError",
    "DomainError",
    "KafkaConfig",
    "LogConfig",
    "PostgresConfig",
    "RedisConfig",
    "RetriableError",
    "Settings",
    "load_settings",
]
