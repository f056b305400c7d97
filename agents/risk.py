"""The risk agent's shell: every `strategy.intents` event becomes exactly one `risk.decisions` event.

The deciding is `execution.risk.RiskEngine`; this shell gives it what it needs at the intent's
event time, kept with an `execution.risk_book.RiskBook` as the backtest keeps it:

- the market: per instrument the last close and a streaming ATR(14) of one timeframe (the first
  one seen for it), from `market.candles`, plus the recent closes and traded value the risk
  breakdown is measured on;
- the portfolio of the account the intent's exchange trades in: a `Ledger` of the fills on
  `execution.reports`, marked at each close, as equity and positions at mark. The paper account
  opens with `paper.starting_cash`; a live venue's account (`ccxt:<exchange id>`, `web3`) opens
  with the balances the execution agent announces on `execution.accounts` when it opens that
  account's books, and from then on books its exchange's fills (see `RiskCore`);
- the orders it approved that have not filled yet (`pending`): counted against the exposure and
  position limits until `execution.reports` fills them or `orders` says they ended, so intents
  repeated faster than fills come back cannot stack past a limit;
- the switches on `risk.control`: a `KillSwitchChanged` (from `cryptiq kill-switch`, the ops API)
  engages or releases the kill switch, a `RiskModeChanged` to `normal` resets the breaker, in
  every account.

It publishes a `RiskModeChanged` on `risk.control` when an account's drawdown breaker trips, and a
`RiskBreakdown` of an account (keyed by its name) on `risk.breakdown` after each of its fills and
transfers, and of every account each `risk.breakdown_every_candles` closed candles. Its state
(per account the engine state, the ledger's books and the pending orders; the streams; the newest
intents answered) is saved at each checkpoint, and an input it has seen is ignored, so a restart
answers every intent once and exactly as before. The state stays the same size in a 24/7 run: a
ledger is saved as its books (not as the fills that made them), and of the ids it ignores
duplicates by (intents answered, fills booked) it keeps the newest `IDS_KEPT` each: a duplicate is
a re-delivery of a recent input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from agents.base import AgentDeps
from config.settings import PaperTradingConfig, RiskConfig
from execution.ledger import STREAM_IDS_KEPT, Ledger, Transfer
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
from topics.orders import AccountTransfer, OrderFilled, OrderUpdated
from topics.registry import (
    EXECUTION_ACCOUNTS,
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
PORTFOLIO = "paper"  # the paper account: every exchange no live account books trades on
IDS_KEPT = STREAM_IDS_KEPT  # newest intent ids answered and fill ids booked, each (inputs since a checkpoint)


@dataclass
class Account:
    """One portfolio risk decides against: its engine (peak and day-start equity; the switches are
    the same in every account's) and its book (the ledger at mark, orders approved not yet filled)."""

    engine: RiskEngine
    book: RiskBook

    @classmethod
    def open(cls, risk: RiskConfig, name: str, quote: str, ledger: Ledger, *, state: RiskState | None = None,
             pending: dict[str, dict[str, str]] | None = None) -> Account:
        ledger.remember = IDS_KEPT
        return cls(RiskEngine(risk, state), RiskBook(ledger, quote=quote, portfolio=name, pending=pending))

    @classmethod
    def restore(cls, risk: RiskConfig, name: str, quote: str, saved: dict[str, Any]) -> Account:
        account = cls.open(risk, name, quote, Ledger.from_state(saved["ledger"]),
                           state=RiskState.model_validate(saved["risk"]), pending=saved["pending"])
        account.book.exchanges.update(saved["exchanges"])
        return account

    def state(self) -> dict[str, Any]:
        return {"risk": self.engine.state.model_dump(mode="json"), "ledger": self.book.ledger.to_state(),
                "exchanges": self.book.exchanges, "pending": self.book.pending}


class RiskCore:
    """Intents, candles, fills, transfers, order changes and switches in; decisions, breaker changes
    and risk breakdowns out. Time from the inputs only.

    Accounts: the paper account (opened with `paper.starting_cash`) books the fills of every
    exchange but those `venues` (exchange -> account: `Settings.live_venues`, what
    `execution.venue` trades live) name: each such account books its exchange's fills, and intents
    on that exchange are sized against it. It holds nothing until `execution.accounts` announces its
    balances (`AccountTransfer`), so until then its intents are rejected (no equity), never sized on
    paper; a fill read before the transfer that funds it still lands in its account (a ledger is a
    sum: the order of its entries does not change it).
    """

    def __init__(self, risk: RiskConfig, paper: PaperTradingConfig, state: dict[str, Any] | None = None,
                 *, venues: dict[str, str] | None = None):
        saved = state or {}
        self.risk = risk
        self.paper = paper
        self.streams: dict[str, dict[str, Any]] = saved.get("streams", {})
        self.atrs = {key: ATR.from_state(s["atr"]) for key, s in self.streams.items()}
        self.accounts = {name: Account.restore(risk, name, paper.quote_asset, account)
                         for name, account in saved.get("accounts", {}).items()}
        self.venues = dict(venues or {})  # exchange -> its live account: from the config, never saved
        if PORTFOLIO not in self.accounts:  # a first start, or a state saved before accounts were
            switches = RiskState.model_validate(saved["risk"]) if "risk" in saved else None
            self.accounts[PORTFOLIO] = Account.open(risk, PORTFOLIO, paper.quote_asset, opening_ledger(paper),
                                                    state=switches, pending=saved.get("pending"))
        for name in self.venues.values():
            self._open(name)
        if "fills" in saved:  # a state saved before accounts were: its fills, marked at the last closes
            for record in saved["fills"]:
                self._fill_booked(OrderFilled.model_validate(record))
            for stream in self.streams.values():
                if stream["close"] is not None:
                    self.ledger.mark(stream["symbol"], Decimal(stream["close"]))
        self.decided: dict[str, None] = dict.fromkeys(saved.get("decided", []))  # oldest first
        self.candles_since_breakdown: int = saved.get("candles_since_breakdown", 0)

    @property
    def engine(self) -> RiskEngine:
        """The paper account's engine (the switches are every account's)."""
        return self.accounts[PORTFOLIO].engine

    @property
    def book(self) -> RiskBook:
        return self.accounts[PORTFOLIO].book

    @property
    def ledger(self) -> Ledger:
        return self.book.ledger

    @property
    def pending(self) -> dict[str, dict[str, str]]:
        """The paper account's approved orders not yet filled, by client order id (`RiskBook.pending`)."""
        return self.book.pending

    def account(self, exchange: str) -> Account:
        """The account trades on `exchange` are booked in."""
        return self.accounts[self.venues.get(exchange, PORTFOLIO)]

    def _open(self, name: str) -> Account:
        """The live account `name`, opened empty (valued at the closes seen so far, with the switches
        as they are now) if it is new."""
        if name not in self.accounts:
            now = self.engine.state
            switches = RiskState(kill_switch=now.kill_switch, risk_mode=now.risk_mode)
            ledger = Ledger(marks=dict(self.ledger.marks))
            self.accounts[name] = Account.open(self.risk, name, self.paper.quote_asset, ledger,
                                               state=switches)
        return self.accounts[name]

    def state(self) -> dict[str, Any]:
        for key, atr in self.atrs.items():
            self.streams[key]["atr"] = atr.to_state()
        return {
            "accounts": {name: account.state() for name, account in self.accounts.items()},
            "streams": self.streams, "decided": list(self.decided),
            "candles_since_breakdown": self.candles_since_breakdown,
        }

    def handle(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        payload = env.payload
        if isinstance(payload, OrderIntent):
            return self._intent(env, payload)
        if isinstance(payload, CandleClosed):
            return self._candle(env, payload)
        if isinstance(payload, OrderFilled):
            return self._fill(env, payload)
        if isinstance(payload, AccountTransfer):
            return self._transfer(env, payload)
        if isinstance(payload, OrderUpdated):
            for account in self.accounts.values():  # the book that approved the order tracks it
                account.book.order_changed(payload)
        else:
            assert isinstance(payload, KillSwitchChanged | RiskModeChanged)
            for account in self.accounts.values():
                account.engine.apply(payload)
        return []

    def _intent(self, env: Envelope[Event], intent: OrderIntent) -> list[Envelope[Event]]:
        if intent.decision_id in self.decided:
            return []  # answered before (a replay after a restart): one decision per intent
        self.decided[intent.decision_id] = None
        if len(self.decided) > IDS_KEPT:
            del self.decided[next(iter(self.decided))]
        return self._decide(env, intent)

    # -- market, fills and transfers --

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
        for account in self.accounts.values():
            account.book.ledger.mark_candle(candle)
        every = self.risk.breakdown_every_candles
        if every == 0:
            return []
        self.candles_since_breakdown += 1
        if self.candles_since_breakdown < every:
            return []
        return [self._breakdown(env, account) for account in self.accounts.values()]

    def _fill(self, env: Envelope[Event], fill: OrderFilled) -> list[Envelope[Event]]:
        if not self._fill_booked(fill):
            return []  # booked before
        for account in self.accounts.values():  # the book that approved the order tracks it
            account.book.filled(fill)
        return [self._breakdown(env, self.account(fill.exchange))]

    def _fill_booked(self, fill: OrderFilled) -> bool:
        """Book `fill` in its account; False if it was booked before."""
        book = self.account(fill.exchange).book
        if not book.ledger.apply(fill):
            return False
        book.exchanges[fill.symbol] = fill.exchange
        return True

    def _transfer(self, env: Envelope[Event], transfer: AccountTransfer) -> list[Envelope[Event]]:
        """Money into or out of a live account (one `venues` does not name is kept, not traded)."""
        account = self._open(transfer.account)
        booked = account.book.ledger.apply(Transfer(transfer_id=transfer.transfer_id, asset=transfer.asset,
                                                    amount=transfer.amount, ts_event=transfer.ts_event))
        return [self._breakdown(env, account)] if booked else []

    # -- decisions --

    def _decide(self, env: Envelope[Event], intent: OrderIntent) -> list[Envelope[Event]]:
        account = self.account(intent.exchange)
        portfolio = account.book.portfolio(env.ts)
        out: list[Envelope[Event]] = []
        tripped = account.engine.observe(portfolio)
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
            decision = account.book.decide(account.engine, intent, portfolio, market)
        out.append(Envelope.create(decision, key=intent.key, ts=env.ts, source=RiskAgent.name, caused_by=env,
                                   discriminator=intent.decision_id))
        return out

    # -- the risk picture --

    def breakdown(self, ts: int, account: Account) -> RiskBreakdown:
        """`account`'s risk breakdown at `ts` from the candles and fills seen so far."""
        portfolio = account.book.portfolio(ts)
        window = self.risk.breakdown_window
        histories = {p.key: self.streams[p.key].get("history", []) for p in portfolio.positions
                     if p.key in self.streams}
        closes = {key: [(int(t), float(c)) for t, c, _ in rows] for key, rows in histories.items()}
        volumes = {key: math.fsum(v for _, _, v in rows[-window:]) for key, rows in histories.items() if rows}
        timeframes = [self.streams[key]["timeframe"] for key in histories]
        periods = YEAR_MS / timeframe_ms(timeframes[0]) if timeframes else 1.0
        return risk_breakdown(portfolio, returns=aligned_log_returns(closes, window),
                              quote_volumes=volumes, periods_per_year=periods)

    def _breakdown(self, env: Envelope[Event], account: Account) -> Envelope[Event]:
        self.candles_since_breakdown = 0
        return Envelope.create(self.breakdown(env.ts, account), key=account.book.name, ts=env.ts,
                               source=RiskAgent.name, caused_by=env, discriminator=env.event_id)


class RiskAgent:
    """Sizes, stops and limits every intent against its account's portfolio: one decision per intent."""

    name: ClassVar[str] = "risk"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (
        STRATEGY_INTENTS, MARKET_CANDLES, EXECUTION_REPORTS, EXECUTION_ACCOUNTS, ORDERS, RISK_CONTROL,
    )
    produces: ClassVar[tuple[TopicSpec, ...]] = (RISK_DECISIONS, RISK_CONTROL, RISK_BREAKDOWN)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.risk = deps.settings.risk if deps.settings is not None else RiskConfig()
        self.paper = deps.settings.paper if deps.settings is not None else PaperTradingConfig()
        self.venues = deps.settings.live_venues() if deps.settings is not None else {}
        self.core = RiskCore(self.risk, self.paper, venues=self.venues)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        if saved:
            self.core = RiskCore(self.risk, self.paper, orjson.loads(saved), venues=self.venues)
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
