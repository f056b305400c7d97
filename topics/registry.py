"""Every Kafka topic CryptIQ reads or writes, in one place: name, key, events, partitions, retention.

Topic names are constants here and nowhere else. Each event type belongs to exactly one topic,
so an agent returns envelopes and the runtime knows where each one goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topics.alerting import AlertNotification
from topics.backtest import StrategyRanked
from topics.control import AgentPauseChanged, StrategyOverridden
from topics.events import Event
from topics.market import CandleClosed, MarketScan, TickerUpdated, TradeExecuted
from topics.orchestration import StreamStateChanged
from topics.orders import AccountTransfer, OrderFilled, OrderUpdated
from topics.regime import RegimeChanged
from topics.system import AgentFailed, AgentHeartbeat, AlertRaised, DeadLettered, EchoObserved
from topics.technical import TechnicalSignal
from topics.trading import KillSwitchChanged, OrderIntent, RiskBreakdown, RiskDecision, RiskModeChanged

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name, what its key is, which events it carries and how long it keeps them."""

    name: str
    description: str
    key: str
    events: tuple[type[Event], ...]
    partitions: int | None = None  # None: the configured default (kafka.default_partitions)
    retention_ms: int | None = 7 * DAY_MS  # None with compacted=False: keep forever
    compacted: bool = False

    def topic_configs(self) -> dict[str, str]:
        """The Kafka topic configs that `cryptiq infra up` creates the topic with."""
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None and not self.compacted:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


MARKET_CANDLES = TopicSpec(
    "market.candles", "Closed OHLCV candles", "exchange:symbol:timeframe", (CandleClosed,)
)
MARKET_TICKERS = TopicSpec("market.tickers", "Ticker snapshots", "exchange:symbol", (TickerUpdated,))
MARKET_TRADES = TopicSpec("market.trades", "Public trades", "exchange:symbol", (TradeExecuted,))
MARKET_SCAN = TopicSpec(
    "market.scan", "Ranked snapshots of the universe from the scanner (latest per key matters)",
    "scan:timeframe", (MarketScan,), compacted=True,
)
SIGNALS_TECHNICAL = TopicSpec(
    "signals.technical", "Indicators, discrete signals and a buy/sell/hold decision per closed candle, "
    "each with the Bayesian confidence of its hit rate", "exchange:symbol:timeframe", (TechnicalSignal,),
)
ALERTS = TopicSpec(
    "alerts", "Alerts from every agent, and agent failures", "alert name or symbol",
    (AlertRaised, AgentFailed), retention_ms=30 * DAY_MS,
)
ALERT_NOTIFICATIONS = TopicSpec(
    "alerts.notifications", "What should reach a person: alerts deduplicated, ranked and rate-limited",
    "channel", (AlertNotification,), retention_ms=30 * DAY_MS,
)
AGENTS_HEARTBEAT = TopicSpec(
    "agents.heartbeat", "Liveness, lag and last error of each agent instance", "agent:instance",
    (AgentHeartbeat,), partitions=1, retention_ms=1 * DAY_MS,
)
DEADLETTER = TopicSpec(
    "deadletter", "Messages that failed decoding, validation or handling, with the reason and "
    "the original bytes", "original topic:partition", (DeadLettered,), retention_ms=None,
)
ORDERS = TopicSpec(
    "orders", "Every state change of every order, with the whole order after it", "exchange:symbol",
    (OrderUpdated,), retention_ms=30 * DAY_MS,
)
EXECUTION_REPORTS = TopicSpec(
    "execution.reports", "Fills: price, quantity, fee and liquidity of each execution", "exchange:symbol",
    (OrderFilled,), retention_ms=30 * DAY_MS,
)
EXECUTION_ACCOUNTS = TopicSpec(
    "execution.accounts", "Money moved into or out of a trading account as its books record it (a live "
    "venue's opening balances); kept for good: with the fills it is the account's whole history",
    "account", (AccountTransfer,), partitions=1, retention_ms=None,
)
STRATEGY_INTENTS = TopicSpec(
    "strategy.intents", "Strategies' proposals to trade, for risk to approve", "exchange:symbol",
    (OrderIntent,),
)
RISK_DECISIONS = TopicSpec(
    "risk.decisions", "Risk's answer to each intent: approved, resized or rejected, with reasons",
    "exchange:symbol", (RiskDecision,), retention_ms=30 * DAY_MS,
)
RISK_BREAKDOWN = TopicSpec(
    "risk.breakdown", "Exposure, volatility, liquidity, concentration and correlation per portfolio "
    "(latest per key matters)", "portfolio", (RiskBreakdown,), compacted=True,
)
RISK_CONTROL = TopicSpec(
    "risk.control", "Kill switch and drawdown breaker changes (compacted: the latest per key is the "
    "switch's state)", "kill_switch or risk_mode", (KillSwitchChanged, RiskModeChanged), compacted=True,
)
REGIME = TopicSpec(
    "regime", "Confirmed market regime changes per stream: bull, bear, neutral or high_volatility, "
    "with the detector, its probabilities or rule evidence, and the features (latest per key matters)",
    "exchange:symbol:timeframe", (RegimeChanged,), compacted=True,
)
ORCHESTRATOR_STATE = TopicSpec(
    "orchestrator.state", "Per stream: regime, active strategy and parameters, pin, position and open "
    "intents (compacted: the latest per key is the stream's state)", "exchange:symbol:timeframe",
    (StreamStateChanged,), compacted=True,
)
CONTROL_COMMANDS = TopicSpec(
    "control.commands", "Operator commands: pin a stream's strategy, pause or resume an agent (from the "
    "ops API or the CLI, audited there)", "stream or agent name", (StrategyOverridden, AgentPauseChanged),
    partitions=1, retention_ms=30 * DAY_MS,
)
STRATEGIES_RANKINGS = TopicSpec(
    "strategies.rankings", "Out-of-sample scores of optimised strategies per stream, overall and per regime, "
    "for the StrategySelector (latest per key matters)", "exchange:symbol:timeframe:regime:strategy",
    (StrategyRanked,), compacted=True,
)
DIAGNOSTICS_ECHO = TopicSpec(
    "diagnostics.echo", "What the echo agent saw: an end-to-end probe of the pipeline",
    "the input's key", (EchoObserved,), retention_ms=1 * DAY_MS,
)


@dataclass(frozen=True)
class TopicRegistry:
    """Look-ups over a set of topics: by name, and from an event type to its topic."""

    topics: tuple[TopicSpec, ...]
    _by_name: dict[str, TopicSpec] = field(init=False, repr=False, compare=False)
    _by_event: dict[type[Event], TopicSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, TopicSpec] = {}
        by_event: dict[type[Event], TopicSpec] = {}
        for spec in self.topics:
            if spec.name in by_name:
                raise ValueError(f"topic {spec.name!r} is declared twice")
            by_name[spec.name] = spec
            for event in spec.events:
                if event in by_event:
                    raise ValueError(f"{event.__name__} is carried by {by_event[event].name} and {spec.name}")
                by_event[event] = spec
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_by_event", by_event)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.topics)

    def get(self, name: str) -> TopicSpec:
        """The topic called `name`; KeyError naming the known topics if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None

    def topic_of(self, event: type[Event]) -> TopicSpec:
        """The one topic that carries events of type `event`."""
        try:
            return self._by_event[event]
        except KeyError:
            raise KeyError(
                f"no topic carries {event.__name__}: add it to a TopicSpec in topics/registry.py"
            ) from None

    def names(self) -> list[str]:
        return [spec.name for spec in self.topics]


REGISTRY = TopicRegistry((
    MARKET_CANDLES, MARKET_TICKERS, MARKET_TRADES, MARKET_SCAN, ALERTS, ALERT_NOTIFICATIONS, AGENTS_HEARTBEAT,
    DEADLETTER,
    DIAGNOSTICS_ECHO, SIGNALS_TECHNICAL, ORDERS, EXECUTION_REPORTS, EXECUTION_ACCOUNTS,
    STRATEGY_INTENTS, RISK_DECISIONS, RISK_BREAKDOWN, RISK_CONTROL, REGIME, CONTROL_COMMANDS,
    ORCHESTRATOR_STATE, STRATEGIES_RANKINGS,
))
