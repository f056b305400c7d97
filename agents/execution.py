"""The execution agent's shell: approved risk decisions become orders, candles fill them, exits close them.

Per decision (approved or resized; rejected ones are only acknowledged) it creates the order
with the client order id derived from the decision id and places it on the venue `make_venue`
builds — a `PaperVenue` per instrument, with the generic `paper.*` market rules. Before placing,
it checks both its own record of decisions and the order store in Postgres, so a replayed or
duplicated decision, even after a restart, never places a second order. Each closed candle
drives the venue: fills go to `execution.reports`, every order change to `orders`, and into the
agent's `Ledger`.

Exits: when an entry order fills, the decision's stop-loss, take-profit and trailing stop arm a
`Protection` of the instrument's position. After each closed candle of the instrument, a long is
stopped out if the candle's low reached the stop (the trailing stop, once it has ratcheted above
the decision's stop) and takes profit if its high reached the target (a short mirrors it; when a
candle reaches both, the stop is assumed first). Either sends a market order for the position,
filled at the next candle's open; otherwise the trailing stop ratchets with the candle's best
price. The exit order's decision id is the entry's plus `:stop-loss`, `:take-profit` or
`:trailing-stop`, so it is traceable and never sent twice.

Kill switch (`KillSwitchChanged` on `risk.control`): when it is engaged, every open order is
cancelled at the venue (reason: who engaged it and why), every new decision becomes a rejected
order with that reason, and protective exits do not fire, until a release. Its state is part of
the agent's saved state, and `risk.control` is read like any other input, so a restart keeps it.

Crash safety: right after an order reaches the venue the agent saves its state (the venues, the
decisions handled, the events not yet stored, and the events each input produced since the last
commit). If the process dies before its offsets are committed, the restarted agent reads the
same inputs again, recognises them, and publishes the same events again (same event ids) instead
of sending anything to the venue a second time. Order changes, fills and ledger entries are
written to Postgres at each checkpoint (right before offsets are committed), idempotently. The
paper venue has no state format of its own, so the venues are pickled: they are pure in-memory
objects of this codebase.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

import infra
from agents.base import AgentDeps
from agents.paper_account import ACCOUNT, opening_deposit, opening_ledger, paper_market, venue_config
from config import Settings
from config.settings import PaperTradingConfig
from execution import order as orders
from execution.ledger import Ledger, Transfer, entry_record
from execution.market import Market
from execution.order import OrderRequest, client_order_id, create_order
from execution.paper_gateway import PaperVenue
from execution.risk import TrailingStop
from memory.database import create_engine
from memory.ledger import LedgerRecord, LedgerState, LedgerStore
from memory.orders import OrderStore
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key
from topics.orders import OrderEvent, OrderFilled, OrderUpdated
from topics.registry import EXECUTION_REPORTS, MARKET_CANDLES, ORDERS, RISK_CONTROL, RISK_DECISIONS, TopicSpec
from topics.trading import KillSwitchChanged, RiskDecision, RiskModeChanged

STATE_KEY = "state"
ORDER_TYPES = {"market": "market", "limit": "limit", "stop": "stop"}
ExitKind = Literal["stop-loss", "take-profit", "trailing-stop"]


def make_venue(settings: Settings | None, exchange: str, symbol: str) -> PaperVenue:
    """The venue `symbol` on `exchange` trades on: a paper venue with the `paper.*` rules.

    A symbol that is not BASE/QUOTE is listed nowhere, so its orders are rejected as unknown.
    """
    paper = settings.paper if settings is not None else PaperTradingConfig()
    try:
        markets = [paper_market(paper, exchange, symbol)]
    except ValueError:
        markets = []
    return PaperVenue(exchange, markets, venue_config(paper))


@dataclass(frozen=True)
class ExitPlan:
    """What an entry order's decision said about leaving: stop, target, trailing distance."""

    decision_id: str
    side: Literal["long", "short"]
    stop_loss: Decimal
    take_profit: Decimal | None
    trailing_distance: Decimal | None


@dataclass
class Protection:
    """The armed exits of one instrument's position (the latest filled entry's plan)."""

    plan: ExitPlan
    stop: Decimal
    trailing: TrailingStop | None = None
    exit_cid: str | None = None  # the last exit order sent
    exits: int = 0  # exit orders sent: a second one (after the first ended short) gets its own id

    @property
    def current_stop(self) -> Decimal:
        """The decision's stop, or the trailing stop once it has moved past it."""
        if self.trailing is None:
            return self.stop
        return max(self.stop, self.trailing.stop) if self.plan.side == "long" else min(self.stop,
                                                                                       self.trailing.stop)


@dataclass
class ExecutionState:
    """What the agent must not forget across a restart."""

    ledger: Ledger
    venues: dict[str, PaperVenue] = field(default_factory=dict)  # instrument key -> its venue
    handled: set[str] = field(default_factory=set)  # decision ids already turned into orders
    last_open_time: dict[str, int] = field(default_factory=dict)  # stream key -> newest candle seen
    unsaved: list[OrderEvent | Transfer] = field(default_factory=list)  # for Postgres at the checkpoint
    kill_switch: KillSwitchChanged | None = None
    plans: dict[str, ExitPlan] = field(default_factory=dict)  # entry client order id -> its exits
    protections: dict[str, Protection] = field(default_factory=dict)  # instrument key -> armed exits
    outbox: dict[str, list[OrderEvent]] = field(default_factory=dict)  # input event id -> its outputs

    def __setstate__(self, saved: dict[str, Any]) -> None:
        """Restore a pickle, also one saved before a field was added (the field takes its default)."""
        fresh = ExecutionState(ledger=saved["ledger"])
        self.__dict__.update(fresh.__dict__ | saved)

    @property
    def kill_switch_on(self) -> bool:
        return self.kill_switch is not None and self.kill_switch.engaged


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ExecutionAgent:
    """Places approved decisions on the paper venue, reports order changes and fills, runs exits."""

    name: ClassVar[str] = "execution"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (RISK_DECISIONS, MARKET_CANDLES, RISK_CONTROL)
    produces: ClassVar[tuple[TopicSpec, ...]] = (ORDERS, EXECUTION_REPORTS)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.paper = deps.settings.paper if deps.settings is not None else PaperTradingConfig()
        self.state = ExecutionState(ledger=opening_ledger(self.paper), unsaved=[opening_deposit(self.paper)])
        self.postgres_url: str | None = None
        # Inputs whose outputs an earlier life of this agent made but may not have published:
        # published again, once, when the input is read again (see `_again`).
        self._unconfirmed: set[str] = set()

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
            self._unconfirmed = set(self.state.outbox)
        if self.state.kill_switch_on:
            switch = self.state.kill_switch
            assert switch is not None
            self.deps.log.warning("kill_switch_engaged", actor=switch.actor, reason=switch.reason,
                                  at=switch.at)

    async def checkpoint(self) -> None:
        """Postgres first (idempotent), then the state: a crash between them only repeats writes.

        Everything handled so far is on the broker when the runtime checkpoints, so the outbox
        (kept only to publish again after a crash) is emptied here.
        """
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
        state.outbox = {}
        await self._save()

    async def _save(self) -> None:
        await self.deps.store.save(STATE_KEY, pickle.dumps(self.state))

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        payload = env.payload
        if isinstance(payload, CandleClosed):
            return await self._candle(env, payload)
        if isinstance(payload, KillSwitchChanged):
            return await self._kill_switch(env, payload)
        if isinstance(payload, RiskModeChanged):
            return []  # risk-off is risk's to enforce: it rejects new intents; open orders stay
        assert isinstance(payload, RiskDecision)
        return await self._decision(env, payload)

    # -- decisions --

    async def _decision(self, env: Envelope[Event], decision: RiskDecision) -> list[Envelope[Event]]:
        if decision.verdict == "rejected":
            return []
        if decision.decision_id in self.state.handled:
            return self._again(env)
        cid = client_order_id(decision.decision_id)
        async with self._engine() as engine:
            known = engine is not None and await OrderStore(engine).get(cid) is not None
        if known:
            self.state.handled.add(decision.decision_id)
            return []  # placed by an earlier life of this agent whose state was lost
        self.state.handled.add(decision.decision_id)
        venue = self._venue(decision.exchange, decision.symbol)
        market = venue.market(decision.symbol)  # None: unknown symbol, and create_order rejects it
        entry = decision.entry_price
        size = decision.size
        if decision.sizing == "reduce_only" and market is not None:
            size = await self._reducible(venue, decision.symbol, decision.side, decision.size)
            if size <= 0:
                self.deps.log.info("reduce_only_skipped", decision_id=decision.decision_id,
                                   symbol=decision.symbol, reason="no open position left to reduce")
                return []
        request = OrderRequest(
            decision_id=decision.decision_id, exchange=decision.exchange, symbol=decision.symbol,
            side=decision.side, order_type=ORDER_TYPES[decision.entry_type], quantity=size,
            limit_price=self._price(market, entry) if decision.entry_type == "limit" else None,
            stop_price=self._price(market, entry) if decision.entry_type == "stop" else None,
            reference_price=entry,
        )
        order, events = create_order(request, market, now=env.ts)
        if order.status == "new" and self.state.kill_switch_on:
            _, refused = orders.reject(order, now=env.ts, reasons=[self._blocked()])
            events += refused
            self.deps.log.warning("order_blocked_by_kill_switch", client_order_id=cid,
                                  decision_id=decision.decision_id)
        elif order.status == "new":
            if decision.stop_loss is not None:
                side: Literal["long", "short"] = "long" if decision.side == "buy" else "short"
                trailing = decision.trailing_stop.distance if decision.trailing_stop is not None else None
                self.state.plans[cid] = ExitPlan(decision.decision_id, side, decision.stop_loss,
                                                 decision.take_profit, trailing)
            events += await self._place(venue, order, env.ts)
        return await self._publish(env, events)

    @staticmethod
    def _price(market: Market | None, price: Decimal | None) -> Decimal | None:
        """A decided price on the venue's tick (risk computes prices; the venue lists the tick);
        a price that is no number is left as it is, for the order checks to reject with a reason."""
        if market is None or price is None or not price.is_finite():
            return price
        return market.round_price(price)

    async def _place(self, venue: PaperVenue, order: orders.Order, now: int) -> list[OrderEvent]:
        events = await venue.place(order, now=now)
        status = next((e.status for e in events if isinstance(e, OrderUpdated)), "known")
        self.deps.log.info("order_placed", client_order_id=order.client_order_id,
                           decision_id=order.decision_id, symbol=order.symbol, side=order.side,
                           quantity=str(order.quantity), status=status)
        return events

    def _blocked(self) -> str:
        switch = self.state.kill_switch
        assert switch is not None
        return f"kill switch on since {_utc(switch.at)} ({switch.actor}: {switch.reason}): no new orders"

    async def _reducible(self, venue: PaperVenue, symbol: str, side: str, wanted: Decimal) -> Decimal:
        """How much a reducing order may still trade: the position in the opposite direction, less
        what open orders on the same side will already take off. Strategies can repeat an exit
        before its fill comes back; without this an exit would turn into a new position."""
        market = venue.market(symbol)
        assert market is not None
        held = self.state.ledger.positions.get(symbol)
        quantity = held.quantity if held is not None else Decimal(0)
        reducing = (quantity > 0 and side == "sell") or (quantity < 0 and side == "buy")
        if not reducing:
            return Decimal(0)
        pending = sum(
            (o.quantity - o.filled_quantity for o in await venue.fetch_open_orders(symbol) if o.side == side),
            Decimal(0),
        )
        return market.floor_quantity(min(wanted, abs(quantity) - pending))

    # -- the kill switch --

    async def _kill_switch(self, env: Envelope[Event], switch: KillSwitchChanged) -> list[Envelope[Event]]:
        if switch == self.state.kill_switch:
            return self._again(env)
        self.state.kill_switch = switch
        self.deps.log.warning("kill_switch_changed", engaged=switch.engaged, actor=switch.actor,
                              reason=switch.reason, at=switch.at)
        if not switch.engaged:
            await self._save()
            return []
        why = f"kill switch engaged by {switch.actor}: {switch.reason}"
        events: list[OrderEvent] = []
        for venue in self.state.venues.values():
            for order in await venue.fetch_open_orders():
                events += await venue.cancel(order.client_order_id, now=env.ts, reason=why)
        self.deps.log.warning("orders_cancelled_by_kill_switch",
                              cancelled=sum(isinstance(e, OrderUpdated) for e in events))
        return await self._publish(env, events)

    # -- candles: fills and exits --

    async def _candle(self, env: Envelope[Event], candle: CandleClosed) -> list[Envelope[Event]]:
        if candle.open_time <= self.state.last_open_time.get(env.key, -1):
            return self._again(env)  # seen before: the venue already traded it
        self.state.last_open_time[env.key] = candle.open_time
        key = instrument_key(candle.exchange, candle.symbol)
        venue = self.state.venues.get(key)
        events = venue.on_candle(candle) if venue is not None else []
        for event in events:
            if isinstance(event, OrderFilled):
                self.state.ledger.apply(event)
                self._arm(key, event)
        for event in events:  # after arming: a fill's `filled` update comes before the fill itself
            if isinstance(event, OrderUpdated) and event.status in orders.TERMINAL:
                self.state.plans.pop(event.client_order_id, None)
        self.state.ledger.mark_candle(candle)
        if venue is not None and key in self.state.protections:
            events += await self._protect(key, venue, candle)
        return await self._publish(env, events)

    def _arm(self, key: str, fill: OrderFilled) -> None:
        """An entry filled: protect the position with its decision's exits (the latest entry's win)."""
        plan = self.state.plans.get(fill.client_order_id)
        if plan is None:
            return
        held = self.state.ledger.positions.get(fill.symbol)
        quantity = held.quantity if held is not None else Decimal(0)
        if quantity == 0 or (quantity > 0) != (plan.side == "long"):
            return  # the fill only reduced a position the other way: that one keeps its exits
        current = self.state.protections.get(key)
        if current is not None and current.plan.decision_id == plan.decision_id:
            return  # armed by an earlier part of the same order
        trailing = None
        if plan.trailing_distance is not None:
            trailing = TrailingStop(plan.side, plan.trailing_distance, plan.stop_loss, fill.price)
        self.state.protections[key] = Protection(plan, plan.stop_loss, trailing)

    async def _protect(self, key: str, venue: PaperVenue, candle: CandleClosed) -> list[OrderEvent]:
        """Check the instrument's exits against the candle: an exit order if one is hit, else ratchet."""
        protection = self.state.protections[key]
        plan = protection.plan
        held = self.state.ledger.positions.get(candle.symbol)
        quantity = held.quantity if held is not None else Decimal(0)
        if quantity == 0 or (quantity > 0) != (plan.side == "long"):
            del self.state.protections[key]  # closed (or turned) by other orders: nothing to protect
            return []
        if protection.exit_cid is not None:
            sent = await venue.fetch_order(protection.exit_cid)
            if sent is not None and sent.is_open:
                return []  # the exit is working
        high, low = Decimal(repr(candle.high)), Decimal(repr(candle.low))
        long = plan.side == "long"
        stop = protection.current_stop
        kind: ExitKind | None = None
        if low <= stop if long else high >= stop:
            moved = protection.trailing is not None and stop != protection.stop
            kind = "trailing-stop" if moved else "stop-loss"
        elif plan.take_profit is not None and (high >= plan.take_profit if long else low <= plan.take_profit):
            kind = "take-profit"
        if kind is None or self.state.kill_switch_on:
            if protection.trailing is not None:
                protection.trailing = protection.trailing.update(high if long else low)
            return []
        exit_side = "sell" if long else "buy"
        size = await self._reducible(venue, candle.symbol, exit_side, abs(quantity))
        if size <= 0:
            return []  # other open orders already close the position
        now = candle.close_time
        decision_id = f"{plan.decision_id}:{kind}" + (f":{protection.exits}" if protection.exits else "")
        request = OrderRequest(decision_id=decision_id, exchange=candle.exchange, symbol=candle.symbol,
                               side=exit_side, order_type="market", quantity=size,
                               reference_price=Decimal(repr(candle.close)))
        order, events = create_order(request, venue.market(candle.symbol), now=now)
        protection.exit_cid = order.client_order_id
        protection.exits += 1
        self.deps.log.info("exit_triggered", kind=kind, decision_id=decision_id, symbol=candle.symbol,
                           stop=str(stop), take_profit=str(plan.take_profit), low=str(low), high=str(high))
        if order.status == "new":
            events += await self._place(venue, order, now)
        if any(isinstance(e, OrderUpdated) and e.status == "rejected" for e in events):
            # e.g. a remnant below the venue's minimum: retrying every candle would only repeat it
            del self.state.protections[key]
            self.deps.log.warning("exit_rejected", decision_id=decision_id, symbol=candle.symbol)
        return events

    def _venue(self, exchange: str, symbol: str) -> PaperVenue:
        key = instrument_key(exchange, symbol)
        if key not in self.state.venues:
            self.state.venues[key] = make_venue(self.deps.settings, exchange, symbol)
        return self.state.venues[key]

    # -- publishing --

    async def _publish(self, env: Envelope[Event], events: list[OrderEvent]) -> list[Envelope[Event]]:
        """Record `events` for Postgres and as `env`'s outputs; save at once if an order was sent,
        so a crash before the commit cannot make a restarted agent send it again."""
        if not events:
            return []
        self.state.unsaved += events
        self.state.outbox[env.event_id] = list(events)
        if any(isinstance(e, OrderUpdated) and e.status == "submitted" for e in events):
            await self._save()
        return self._envelopes(env, events)

    def _again(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        """An input seen before. If an earlier life of the agent handled it and died before the
        commit, what it produced then (same event ids) is published again, once; a duplicate
        within this life needs nothing, its outputs are already on their way."""
        if env.event_id not in self._unconfirmed:
            return []
        self._unconfirmed.discard(env.event_id)
        events = self.state.outbox.get(env.event_id, [])
        self.deps.log.info("outputs_published_again", input_event_id=env.event_id, events=len(events))
        return self._envelopes(env, events)

    def _envelopes(self, env: Envelope[Event], events: list[OrderEvent]) -> list[Envelope[Event]]:
        out: list[Envelope[Event]] = []
        for event in events:
            key = instrument_key(event.exchange, event.symbol)
            tag = event.trade_id if isinstance(event, OrderFilled) else f"{event.client_order_id}:{event.seq}"
            out.append(Envelope.create(event, key=key, ts=event.ts_event, source=self.name, caused_by=env,
                                       discriminator=tag))
        return out
