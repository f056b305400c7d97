"""The risk agent's shell: every `strategy.intents` event becomes exactly one `risk.decisions` event.

The deciding is `execution.risk.RiskEngine`; this shell gives it what it needs at the intent's
event time:

- the market: per instrument the last close and a streaming ATR(14) of one timeframe (the first
  one seen for it), from `market.candles`;
- the portfolio: a `Ledger` of the fills on `execution.reports`, opened with the paper
  account's starting cash and marked at each close, as equity and positions at mark.

It publishes a `RiskModeChanged` on `risk.control` when the drawdown breaker trips. Its state
(engine state, streams, fills, the intents already answered) is saved at each checkpoint, and an
input it has seen is ignored, so a restart answers every intent once and exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from agents.base import AgentDeps
from agents.paper_account import opening_ledger
from config.settings import PaperTradingConfig, RiskConfig
from execution.risk import MarketSnapshot, RiskEngine, RiskState
from indicators.streaming import ATR
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key
from topics.orders import OrderFilled
from topics.registry import (
    EXECUTION_REPORTS,
    MARKET_CANDLES,
    RISK_CONTROL,
    RISK_DECISIONS,
    STRATEGY_INTENTS,
    TopicSpec,
)
from topics.trading import OrderIntent, PortfolioSnapshot, PositionSnapshot, RiskDecision

STATE_KEY = "state"
ATR_PERIOD = 14


class RiskCore:
    """Intents, candles and fills in; decisions and breaker changes out. Time from the inputs only."""

    def __init__(self, risk: RiskConfig, paper: PaperTradingConfig, state: dict[str, Any] | None = None):
        saved = state or {}
        self.paper = paper
        self.engine = RiskEngine(risk, RiskState.model_validate(saved["risk"]) if "risk" in saved else None)
        self.streams: dict[str, dict[str, Any]] = saved.get("streams", {})
        self.atrs = {key: ATR.from_state(s["atr"]) for key, s in self.streams.items()}
        self.fills = [OrderFilled.model_validate(f) for f in saved.get("fills", [])]
        self.ledger = opening_ledger(paper)
        self.exchanges: dict[str, str] = {}  # symbol -> exchange of its fills
        for fill in self.fills:
            self._book(fill)
        for stream in self.streams.values():
            self.ledger.mark(stream["symbol"], Decimal(stream["close"]))
        self.decided: set[str] = set(saved.get("decided", []))

    def state(self) -> dict[str, Any]:
        for key, atr in self.atrs.items():
            self.streams[key]["atr"] = atr.to_state()
        return {
            "risk": self.engine.state.model_dump(mode="json"), "streams": self.streams,
            "fills": [fill.model_dump(mode="json") for fill in self.fills], "decided": sorted(self.decided),
        }

    def handle(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        payload = env.payload
        if isinstance(payload, CandleClosed):
            self._candle(payload)
            return []
        if isinstance(payload, OrderFilled):
            if self._book(payload):
                self.fills.append(payload)
            return []
        assert isinstance(payload, OrderIntent)
        if payload.decision_id in self.decided:
            return []  # answered before (a replay after a restart): one decision per intent
        self.decided.add(payload.decision_id)
        return self._decide(env, payload)

    def _candle(self, candle: CandleClosed) -> None:
        key = instrument_key(candle.exchange, candle.symbol)
        stream = self.streams.setdefault(key, {"symbol": candle.symbol, "timeframe": candle.timeframe,
                                               "open_time": -1, "close": None, "atr_value": None})
        if candle.timeframe != stream["timeframe"] or candle.open_time <= stream["open_time"]:
            return  # another timeframe, or seen before
        atr = self.atrs.setdefault(key, ATR(ATR_PERIOD))
        value = atr.update(candle.high, candle.low, candle.close)
        stream.update(open_time=candle.open_time, close=repr(candle.close),
                      atr_value=None if value is None else repr(value))
        self.ledger.mark_candle(candle)

    def _book(self, fill: OrderFilled) -> bool:
        self.exchanges[fill.symbol] = fill.exchange
        return self.ledger.apply(fill)

    def portfolio(self, ts: int) -> PortfolioSnapshot:
        """Equity and open positions at mark (at cost before an instrument's first close)."""
        positions = []
        for symbol, position in sorted(self.ledger.positions.items()):
            if position.quantity == 0:
                continue
            mark = self.ledger.marks.get(symbol) or abs(position.cost / position.quantity)
            positions.append(PositionSnapshot(exchange=self.exchanges[symbol], symbol=symbol,
                                              quantity=position.quantity, mark_price=mark))
        return PortfolioSnapshot(portfolio="paper", ts=ts, equity=self.ledger.equity(self.paper.quote_asset),
                                 positions=tuple(positions))

    def _decide(self, env: Envelope[Event], intent: OrderIntent) -> list[Envelope[Event]]:
        portfolio = self.portfolio(env.ts)
        out: list[Envelope[Event]] = []
        tripped = self.engine.observe(portfolio)
        if tripped is not None:
            out.append(Envelope.create(tripped, key="risk_mode", ts=env.ts, source=RiskAgent.name,
                                       caused_by=env, discriminator="risk_mode"))
        stream = self.streams.get(intent.key)
        price = Decimal(stream["close"]) if stream and stream["close"] else intent.entry_price
        if price is None:
            decision = RiskDecision(
                decision_id=intent.decision_id, strategy=intent.strategy, exchange=intent.exchange,
                symbol=intent.symbol, side=intent.side, entry_type=intent.entry_type, verdict="rejected",
                size=Decimal(0), requested_size=intent.size, risk_amount=Decimal(0), portfolio=portfolio,
                reasons=[f"no price for {intent.key} yet: a market intent needs a closed candle first"],
            )
        else:
            atr = stream.get("atr_value") if stream else None
            market = MarketSnapshot(price=price, atr=None if atr is None else Decimal(atr))
            decision = self.engine.evaluate(intent, portfolio, market)
        out.append(Envelope.create(decision, key=intent.key, ts=env.ts, source=RiskAgent.name, caused_by=env,
                                   discriminator=intent.decision_id))
        return out


class RiskAgent:
    """Sizes, stops and limits every intent against the paper portfolio: one decision per intent."""

    name: ClassVar[str] = "risk"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (STRATEGY_INTENTS, MARKET_CANDLES, EXECUTION_REPORTS)
    produces: ClassVar[tuple[TopicSpec, ...]] = (RISK_DECISIONS, RISK_CONTROL)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.risk = deps.settings.risk if deps.settings is not None else RiskConfig()
        self.paper = deps.settings.paper if deps.settings is not None else PaperTradingConfig()
        self.core = RiskCore(self.risk, self.paper)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        if saved:
            self.core = RiskCore(self.risk, self.paper, orjson.loads(saved))

    async def checkpoint(self) -> None:
        await self.deps.store.save(STATE_KEY, orjson.dumps(self.core.state()))

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        return self.core.handle(env)
