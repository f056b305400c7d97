"""The execution agent's shell: approved risk decisions become paper orders, candles fill them.

Per decision (approved or resized; rejected ones are only acknowledged) it creates the order
with the client order id derived from the decision id and places it on a `PaperVenue` — one per
instrument, with the generic `paper.*` market rules. Before placing, it checks both its own
record of decisions and the order store in Postgres, so a replayed or duplicated decision, even
after a restart, never places a second order. Each closed candle drives the venue: fills go to
`execution.reports`, every order change to `orders`, and into the agent's `Ledger`.

Order changes, fills and ledger entries are written to Postgres at each checkpoint (right before
offsets are committed), idempotently; then the agent's state — the venues, the decisions it
handled, the candles it has seen — is saved to the state store. The paper venue has no state
format of its own, so the venues are pickled: they are pure in-memory objects of this codebase.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncEngine

import infra
from agents.base import AgentDeps
from agents.paper_account import ACCOUNT, opening_deposit, opening_ledger, paper_market, venue_config
from config.settings import PaperTradingConfig
from execution.ledger import Ledger, Transfer, entry_record
from execution.order import OrderRequest, client_order_id, create_order
from execution.paper_gateway import PaperVenue
from memory.database import create_engine
from memory.ledger import LedgerRecord, LedgerState, LedgerStore
from memory.orders import OrderStore
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key
from topics.orders import OrderEvent, OrderFilled
from topics.registry import EXECUTION_REPORTS, MARKET_CANDLES, ORDERS, RISK_DECISIONS, TopicSpec
from topics.trading import RiskDecision

STATE_KEY = "state"
ORDER_TYPES = {"market": "market", "limit": "limit", "stop": "stop"}


@dataclass
class ExecutionState:
    """What the agent must not forget across a restart."""

    ledger: Ledger
    venues: dict[str, PaperVenue] = field(default_factory=dict)  # instrument key -> its venue
    handled: set[str] = field(default_factory=set)  # decision ids already turned into orders
    last_open_time: dict[str, int] = field(default_factory=dict)  # stream key -> newest candle seen
    unsaved: list[OrderEvent | Transfer] = field(default_factory=list)  # for Postgres at the checkpoint


class ExecutionAgent:
    """Places approved decisions on the paper venue and reports order changes and fills."""

    name: ClassVar[str] = "execution"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (RISK_DECISIONS, MARKET_CANDLES)
    produces: ClassVar[tuple[TopicSpec, ...]] = (ORDERS, EXECUTION_REPORTS)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.paper = deps.settings.paper if deps.settings is not None else PaperTradingConfig()
        self.state = ExecutionState(ledger=opening_ledger(self.paper), unsaved=[opening_deposit(self.paper)])
        self.postgres_url: str | None = None

    @asynccontextmanager
    async def _engine(self) -> AsyncIterator[AsyncEngine | None]:
        """A short-lived engine: the runtime has no stop hook to dispose a long-lived one."""
        if self.postgres_url is None:
            yield None
            return
        engine = create_engine(self.postgres_url)
        try:
            yield engine
        finally:
            await engine.dispose()

    async def start(self) -> None:
        if self.deps.settings is not None:
            self.postgres_url = infra.endpoints(self.deps.settings).postgres_url
        saved = await self.deps.store.load(STATE_KEY)
        if saved:
            self.state = pickle.loads(saved)  # our own state, written by checkpoint()

    async def checkpoint(self) -> None:
        """Postgres first (idempotent), then the state: a crash between them only repeats writes."""
        state = self.state
        async with self._engine() as engine:
            if engine is not None and state.unsaved:
                await OrderStore(engine).record([e for e in state.unsaved if not isinstance(e, Transfer)])
                entries = [LedgerRecord(**entry_record(e)) for e in state.unsaved
                           if isinstance(e, Transfer | OrderFilled)]
                books = LedgerState(version=state.ledger.version, ts=state.ledger.ts,
                                    state=state.ledger.snapshot())
                await LedgerStore(engine).append(ACCOUNT, entries, state=books)
        state.unsaved = []
        await self.deps.store.save(STATE_KEY, pickle.dumps(state))

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        if isinstance(env.payload, CandleClosed):
            return self._candle(env, env.payload)
        assert isinstance(env.payload, RiskDecision)
        return await self._decision(env, env.payload)

    async def _decision(self, env: Envelope[Event], decision: RiskDecision) -> list[Envelope[Event]]:
        if decision.verdict == "rejected" or decision.decision_id in self.state.handled:
            return []
        cid = client_order_id(decision.decision_id)
        async with self._engine() as engine:
            known = engine is not None and await OrderStore(engine).get(cid) is not None
        if known:
            self.state.handled.add(decision.decision_id)
            return []  # placed by an earlier life of this agent whose state was lost
        self.state.handled.add(decision.decision_id)
        venue = self._venue(decision.exchange, decision.symbol)
        market = venue.market(decision.symbol)
        assert market is not None
        entry = decision.entry_price
        size = decision.size
        if decision.sizing == "reduce_only":
            size = await self._reducible(venue, decision, market)
            if size <= 0:
                self.deps.log.info("reduce_only_skipped", decision_id=decision.decision_id,
                                   symbol=decision.symbol, reason="no open position left to reduce")
                return []
        request = OrderRequest(
            decision_id=decision.decision_id, exchange=decision.exchange, symbol=decision.symbol,
            side=decision.side, order_type=ORDER_TYPES[decision.entry_type], quantity=size,
            limit_price=market.round_price(entry) if decision.entry_type == "limit" and entry else None,
            stop_price=market.round_price(entry) if decision.entry_type == "stop" and entry else None,
            reference_price=entry,
        )
        order, events = create_order(request, market, now=env.ts)
        if order.status == "new":
            events += await venue.place(order, now=env.ts)
        return self._publish(env, events)

    async def _reducible(self, venue: PaperVenue, decision: RiskDecision, market: Any) -> Decimal:
        """How much a reduce-only decision may still trade: the position in the opposite direction,
        less what open orders on the same side will already take off. Strategies can repeat an exit
        before its fill comes back; without this an exit would turn into a new position."""
        held = self.state.ledger.positions.get(decision.symbol)
        quantity = held.quantity if held is not None else Decimal(0)
        reducing = (quantity > 0 and decision.side == "sell") or (quantity < 0 and decision.side == "buy")
        if not reducing:
            return Decimal(0)
        pending = sum(
            (o.quantity - o.filled_quantity for o in await venue.fetch_open_orders(decision.symbol)
             if o.side == decision.side),
            Decimal(0),
        )
        return market.floor_quantity(min(decision.size, abs(quantity) - pending))

    def _candle(self, env: Envelope[Event], candle: CandleClosed) -> list[Envelope[Event]]:
        if candle.open_time <= self.state.last_open_time.get(env.key, -1):
            return []  # seen before: the venue already traded it
        self.state.last_open_time[env.key] = candle.open_time
        venue = self.state.venues.get(instrument_key(candle.exchange, candle.symbol))
        events = venue.on_candle(candle) if venue is not None else []
        for event in events:
            if isinstance(event, OrderFilled):
                self.state.ledger.apply(event)
        self.state.ledger.mark_candle(candle)
        return self._publish(env, events)

    def _venue(self, exchange: str, symbol: str) -> PaperVenue:
        key = instrument_key(exchange, symbol)
        if key not in self.state.venues:
            market = paper_market(self.paper, exchange, symbol)
            self.state.venues[key] = PaperVenue(exchange, [market], venue_config(self.paper))
        return self.state.venues[key]

    def _publish(self, env: Envelope[Event], events: list[OrderEvent]) -> list[Envelope[Event]]:
        self.state.unsaved += events
        out: list[Envelope[Event]] = []
        for event in events:
            key = instrument_key(event.exchange, event.symbol)
            tag = event.trade_id if isinstance(event, OrderFilled) else f"{event.client_order_id}:{event.seq}"
            out.append(Envelope.create(event, key=key, ts=event.ts_event, source=self.name, caused_by=env,
                                       discriminator=tag))
        return out
