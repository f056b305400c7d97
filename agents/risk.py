"""The risk agent's shell: every `strategy.intents` event becomes exactly one `risk.decisions` event.

The deciding is `execution.risk.RiskEngine`; this shell gives it what it needs at the intent's
event time, kept with an `execution.risk_book.RiskBook` as the backtest keeps it:

- the market: per instrument the last close and a streaming ATR(14) of one timeframe (the first
  one seen for it), from `market.candles`, plus the recent closes and traded value the risk
  breakdown is measured on;
- the portfolio: a `Ledger` of the fills on `execution.reports`, opened with the paper
  account's starting cash and marked at each close, as equity and positions at mark;
- the orders it approved that have not filled yet (`pending`): counted against the exposure and
  position limits until `execution.reports` fills them or `orders` says they ended, so intents
  repeated faster than fills come back cannot stack past a limit;
- the switches on `risk.control`: a `KillSwitchChanged` (from `cryptiq kill-switch`, the ops API)
  engages or releases the kill switch, a `RiskModeChanged` to `normal` resets the breaker.

It publishes a `RiskModeChanged` on `risk.control` when the drawdown breaker trips, and a
`RiskBreakdown` of the paper portfolio on `risk.breakdown` after every fill and every
`risk.breakdown_every_candles` closed candles. Its state (engine state with the switches,
streams, the portfolio's ledger, pending orders, the newest intents answered) is saved at each
checkpoint, and an input it has seen is ignored, so a restart answers every intent once and exactly
as before. The state stays the same size in a 24/7 run: the ledger is saved as its books (not as
the fills that made them), and of the ids it ignores duplicates by (intents answered, fills
booked) it keeps the newest `IDS_KEPT` each: a duplicate is a re-delivery of a recent input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from agents.base import AgentDeps
from config.settings import PaperTradingConfig, RiskConfig
from execution.ledger import Ledger
from execution.paper_account import opening_ledger
from execution.risk import (
    YEAR_MS,
    MarketSnapshot,
    RiskEngine,
    RiskState,
    aligned_log_returns,
    risk_breakdown,
)
from execution.risk_book import ATR_PERIOD, RiskBook
from indicators.streaming import ATR
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key, timeframe_ms
from topics.orders import OrderFilled, OrderUpdated
from topics.registry import (
    EXECUTION_REPORTS,
    MARKET_CANDLES,
    ORDERS,
    RISK_BREAKDOWN,
    RISK_CONTROL,
    RISK_DECISIONS,
    STRATEGY_INTENTS,
    TopicSpec,
)
from topics.trading import (
    KillSwitchChanged,
    OrderIntent,
    RiskBreakdown,
    RiskDecision,
    RiskModeChanged,
)

STATE_KEY = "state"
PORTFOLIO = "paper"
IDS_KEPT = 10_000  # newest intent ids answered and fill ids booked, each (inputs since a checkpoint)


class RiskCore:
    """Intents, candles, fills, order changes and switches in; decisions, breaker changes and risk
    breakdowns out. Time from the inputs only."""

    def __init__(self, risk: RiskConfig, paper: PaperTradingConfig, state: dict[str, Any] | None = None):
        saved = state or {}
        self.risk = risk
        self.paper = paper
        self.engine = RiskEngine(risk, RiskState.model_validate(saved["risk"]) if "risk" in saved else None)
        self.streams: dict[str, dict[str, Any]] = saved.get("streams", {})
        self.atrs = {key: ATR.from_state(s["atr"]) for key, s in self.streams.items()}
        # the paper portfolio and the approved orders not yet filled
        ledger = Ledger.from_state(saved["ledger"]) if "ledger" in saved else opening_ledger(paper)
        ledger.remember = IDS_KEPT
        self.book = RiskBook(ledger, quote=paper.quote_asset, portfolio=PORTFOLIO,
                             pending=saved.get("pending", {}))
        self.book.exchanges.update(saved.get("exchanges", {}))
        self.ledger = self.book.ledger
        if "fills" in saved:  # a state saved before the ledger was: its fills, marked at the last closes
            for record in saved["fills"]:
                self._fill_booked(OrderFilled.model_validate(record))
            for stream in self.streams.values():
                if stream["close"] is not None:
                    self.ledger.mark(stream["symbol"], Decimal(stream["close"]))
        self.decided: dict[str, None] = dict.fromkeys(saved.get("decided", []))  # oldest first
        self.candles_since_breakdown: int = saved.get("candles_since_breakdown", 0)

    @property
    def pending(self) -> dict[str, dict[str, str]]:
        """Client order id -> the approved order not yet filled (`RiskBook.pending`)."""
        return self.book.pending

    def state(self) -> dict[str, Any]:
        for key, atr in self.atrs.items():
            self.streams[key]["atr"] = atr.to_state()
        return {
            "risk": self.engine.state.model_dump(mode="json"), "streams": self.streams,
            "ledger": self.ledger.to_state(), "exchanges": self.book.exchanges, "decided": list(self.decided),
            "pending": self.pending, "candles_since_breakdown": self.candles_since_breakdown,
        }

    def handle(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        payload = env.payload
        if isinstance(payload, CandleClosed):
            return self._candle(env, payload)
        if isinstance(payload, OrderFilled):
            return self._fill(env, payload)
        if isinstance(payload, OrderUpdated):
            self.book.order_changed(payload)
            return []
        if isinstance(payload, KillSwitchChanged | RiskModeChanged):
            self.engine.apply(payload)
            return []
        assert isinstance(payload, OrderIntent)
        if payload.decision_id in self.decided:
            return []  # answered before (a replay after a restart): one decision per intent
        self.decided[payload.decision_id] = None
        if len(self.decided) > IDS_KEPT:
            del self.decided[next(iter(self.decided))]
        return self._decide(env, payload)

    # -- market and fills --

    def _candle(self, env: Envelope[Event], candle: CandleClosed) -> list[Envelope[Event]]:
        key = instrument_key(candle.exchange, candle.symbol)
        stream = self.streams.setdefault(key, {"symbol": candle.symbol, "timeframe": candle.timeframe,
                                               "open_time": -1, "close": None, "atr_value": None})
        if candle.timeframe != stream["timeframe"] or candle.open_time <= stream["open_time"]:
            return []  # another timeframe, or seen before
        atr = self.atrs.setdefault(key, ATR(ATR_PERIOD))
        value = atr.update(candle.high, candle.low, candle.close)
        stream.update(open_time=candle.open_time, close=repr(candle.close),
                      atr_value=None if value is None else repr(value))
        # (open time, close, traded value in the quote currency) of the breakdown's window
        history = stream.setdefault("history", [])
        history.append([candle.open_time, candle.close, candle.close * candle.volume])
        del history[: -(self.risk.breakdown_window + 1)]
        self.ledger.mark_candle(candle)
        every = self.risk.breakdown_every_candles
        if every == 0:
            return []
        self.candles_since_breakdown += 1
        if self.candles_since_breakdown < every:
            return []
        return [self._breakdown(env)]

    def _fill(self, env: Envelope[Event], fill: OrderFilled) -> list[Envelope[Event]]:
        if not self._fill_booked(fill):
            return []  # booked before
        self.book.filled(fill)
        return [self._breakdown(env)]

    def _fill_booked(self, fill: OrderFilled) -> bool:
        """Book `fill` in the paper portfolio; False if it was booked before."""
        if not self.ledger.apply(fill):
            return False
        self.book.exchanges[fill.symbol] = fill.exchange
        return True

    # -- decisions --

    def _decide(self, env: Envelope[Event], intent: OrderIntent) -> list[Envelope[Event]]:
        portfolio = self.book.portfolio(env.ts)
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
            decision = self.book.decide(self.engine, intent, portfolio, market)
        out.append(Envelope.create(decision, key=intent.key, ts=env.ts, source=RiskAgent.name, caused_by=env,
                                   discriminator=intent.decision_id))
        return out

    # -- the risk picture --

    def breakdown(self, ts: int) -> RiskBreakdown:
        """The paper portfolio's risk breakdown at `ts` from the candles and fills seen so far."""
        portfolio = self.book.portfolio(ts)
        window = self.risk.breakdown_window
        histories = {p.key: self.streams[p.key].get("history", []) for p in portfolio.positions
                     if p.key in self.streams}
        closes = {key: [(int(t), float(c)) for t, c, _ in rows] for key, rows in histories.items()}
        volumes = {key: math.fsum(v for _, _, v in rows[-window:]) for key, rows in histories.items() if rows}
        timeframes = [self.streams[key]["timeframe"] for key in histories]
        periods = YEAR_MS / timeframe_ms(timeframes[0]) if timeframes else 1.0
        return risk_breakdown(portfolio, returns=aligned_log_returns(closes, window),
                              quote_volumes=volumes, periods_per_year=periods)

    def _breakdown(self, env: Envelope[Event]) -> Envelope[Event]:
        self.candles_since_breakdown = 0
        return Envelope.create(self.breakdown(env.ts), key=PORTFOLIO, ts=env.ts, source=RiskAgent.name,
                               caused_by=env, discriminator=env.event_id)


class RiskAgent:
    """Sizes, stops and limits every intent against the paper portfolio: one decision per intent."""

    name: ClassVar[str] = "risk"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (
        STRATEGY_INTENTS, MARKET_CANDLES, EXECUTION_REPORTS, ORDERS, RISK_CONTROL,
    )
    produces: ClassVar[tuple[TopicSpec, ...]] = (RISK_DECISIONS, RISK_CONTROL, RISK_BREAKDOWN)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.risk = deps.settings.risk if deps.settings is not None else RiskConfig()
        self.paper = deps.settings.paper if deps.settings is not None else PaperTradingConfig()
        self.core = RiskCore(self.risk, self.paper)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        if saved:
            self.core = RiskCore(self.risk, self.paper, orjson.loads(saved))
        switch = self.core.engine.state.kill_switch
        if switch is not None and switch.engaged:
            self.deps.log.warning("kill_switch_engaged", actor=switch.actor, reason=switch.reason,
                                  at=switch.at)

    async def checkpoint(self) -> None:
        await self.deps.store.save(STATE_KEY, orjson.dumps(self.core.state()))

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        if isinstance(env.payload, KillSwitchChanged):
            switch = env.payload
            self.deps.log.warning("kill_switch_changed", engaged=switch.engaged, actor=switch.actor,
                                  reason=switch.reason, at=switch.at)
        return self.core.handle(env)
