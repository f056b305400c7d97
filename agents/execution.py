"""The execution agent's shell: approved risk decisions become orders, venues fill them, exits close them.

Per decision (approved or resized; rejected ones are only acknowledged) it creates the order
with the client order id derived from the decision id and places it on the decision's venue:
the live venue `execution.venue` selects (`ccxt:<exchange id>` or `web3`) for decisions on its
exchange, else the `PaperVenue` `make_venue` builds per instrument, with the generic `paper.*`
market rules. Before placing, it checks both its own record of decisions and the order store in
Postgres, so a replayed or duplicated decision, even after a restart, never places a second
order. Fills go to `execution.reports`, every order change to `orders`, and into the `Ledger`
of the venue's account (`paper`, `ccxt:<exchange id>` or `web3`). Paper orders fill on closed
candles; a ccxt market order fills on arrival and the rest are polled on closed candles of that
exchange; a swap fills when its receipt comes (in `place`, or settled on a later candle).

Live venues (see `start`): built with the settings' keys at start-up and reconciled with what
the order store holds as open (ccxt: `reconcile` — missed fills and changes, foreign orders,
balances; web3: `resume` of sent swaps). What that finds is published with the outputs of the
first input. The account's ledger is seeded once from the venue's balances (one `Transfer` per
asset, written to Postgres at once), later restored from the state or from Postgres; whenever it
is opened or restored from Postgres (not from the saved state) its transfers go to
`execution.accounts` with those outputs too, so the risk agent keeps the same books (it ignores a
transfer it has booked). A live
venue holds connections: it is never pickled, and `close()` closes it.

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
objects of this codebase (live venues are rebuilt and reconciled instead). A ccxt venue looks a
client order id up at the exchange before sending it, so an order sent just before a crash whose
state was lost is found, not sent again, and its events come back with the same ids.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncEngine
from web3 import AsyncHTTPProvider

import infra
from agents.base import AgentDeps
from config import Settings
from config.errors import ConfigError, DomainError
from config.settings import PaperTradingConfig
from execution import order as orders
from execution import web3_venue
from execution.ccxt_venue import CcxtVenue
from execution.exits import NOTHING_TO_REDUCE, ExitPlan, Protection, arm, exit_plan, reducible
from execution.ledger import Ledger, Transfer, entry_from_record, entry_record
from execution.market import Market
from execution.order import OrderRequest, client_order_id, create_order
from execution.paper_account import ACCOUNT, opening_deposit, opening_ledger, paper_market, venue_config
from execution.paper_gateway import PaperVenue
from execution.venue import Venue
from execution.web3_venue import Web3Venue
from memory.database import create_engine
from memory.ledger import LedgerRecord, LedgerState, LedgerStore
from memory.orders import OrderStore
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key
from topics.orders import AccountTransfer, OrderEvent, OrderFilled, OrderUpdated, TimeInForce
from topics.registry import (
    EXECUTION_ACCOUNTS,
    EXECUTION_REPORTS,
    MARKET_CANDLES,
    ORDERS,
    RISK_CONTROL,
    RISK_DECISIONS,
    TopicSpec,
)
from topics.trading import KillSwitchChanged, RiskDecision, RiskModeChanged

STATE_KEY = "state"
SETTLE_WAIT_S = 0.5  # how long a candle waits for a sent swap's receipt (it is looked at again next candle)
# Decision ids remembered in the state (a fast path: every other decision is looked up in Postgres by
# its client order id); small, as the state is pickled after every order sent.
HANDLED_KEPT = 2_000
RECENT_CANDLES = 10_000  # per paper instrument: how far behind the market a late order may still catch up
ORDER_TYPES = {"market": "market", "limit": "limit", "stop": "stop"}
LiveVenue = CcxtVenue | Web3Venue
Output = OrderEvent | AccountTransfer  # what the agent publishes for an input
VenueFactory = Callable[[Settings], Awaitable[LiveVenue]]  # the live venue `execution.venue` selects


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


async def make_live_venue(settings: Settings) -> LiveVenue:
    """The live venue `execution.venue` selects, with its keys from the settings.

    ConfigError (one line, naming `execution.venue` and the key at fault) if it cannot be built.
    """
    choice = settings.execution.venue
    try:
        if choice == "web3":
            return await web3_venue.from_settings(settings)
        if choice.startswith("ccxt:"):
            venue = CcxtVenue.from_settings(settings, choice.removeprefix("ccxt:"))
            await venue.load_markets()
            return venue
    except ConfigError as exc:
        raise ConfigError(f"execution.venue = {choice!r}: {exc}") from exc
    raise ConfigError(f"execution.venue = {choice!r} is not a live venue (ccxt:<exchange id> or web3)")


@dataclass
class ExecutionState:
    """What the agent must not forget across a restart."""

    ledger: Ledger  # the paper account's books
    venues: dict[str, PaperVenue] = field(default_factory=dict)  # instrument key -> its paper venue
    # decision ids already turned into orders, the newest HANDLED_KEPT (insertion-ordered; older
    # ones are found in Postgres by their client order id, see `_decision`)
    handled: dict[str, None] = field(default_factory=dict)
    last_open_time: dict[str, int] = field(default_factory=dict)  # stream key -> newest candle seen
    unsaved: list[OrderEvent | Transfer] = field(default_factory=list)  # for Postgres at the checkpoint
    kill_switch: KillSwitchChanged | None = None
    plans: dict[str, ExitPlan] = field(default_factory=dict)  # entry client order id -> its exits
    protections: dict[str, Protection] = field(default_factory=dict)  # instrument key -> armed exits
    outbox: dict[str, list[Output]] = field(default_factory=dict)  # input event id -> its outputs
    accounts: dict[str, Ledger] = field(default_factory=dict)  # live account (`ccxt:<id>`, `web3`) -> books

    def __setstate__(self, saved: dict[str, Any]) -> None:
        """Restore a pickle, also one saved before a field was added (the field takes its default)."""
        fresh = ExecutionState(ledger=saved["ledger"])
        self.__dict__.update(fresh.__dict__ | saved)
        if isinstance(self.handled, set):  # saved when it was a set
            self.handled = dict.fromkeys(sorted(self.handled))

    def remember(self, decision_id: str) -> None:
        """A decision turned into an order (or found placed): kept among the newest HANDLED_KEPT."""
        self.handled[decision_id] = None
        while len(self.handled) > HANDLED_KEPT:
            del self.handled[next(iter(self.handled))]

    @property
    def kill_switch_on(self) -> bool:
        return self.kill_switch is not None and self.kill_switch.engaged


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ExecutionAgent:
    """Places approved decisions on their venue, reports order changes and fills, runs exits."""

    name: ClassVar[str] = "execution"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (RISK_DECISIONS, MARKET_CANDLES, RISK_CONTROL)
    produces: ClassVar[tuple[TopicSpec, ...]] = (ORDERS, EXECUTION_REPORTS, EXECUTION_ACCOUNTS)

    def __init__(self, deps: AgentDeps, *, live_venue: VenueFactory | None = None) -> None:
        """`live_venue` builds the venue `execution.venue` selects (default `make_live_venue`, from
        the settings' keys); tests give one on a simulated exchange or a test chain."""
        self.deps = deps
        self.paper = deps.settings.paper if deps.settings is not None else PaperTradingConfig()
        self.state = ExecutionState(ledger=opening_ledger(self.paper), unsaved=[opening_deposit(self.paper)])
        self.postgres_url: str | None = None
        # Inputs whose outputs an earlier life of this agent made but may not have published:
        # published again, once, when the input is read again (see `_again`).
        self._unconfirmed: set[str] = set()
        self._make_live = live_venue or make_live_venue
        self.live: LiveVenue | None = None  # holds connections: never in the pickled state
        self.account = ACCOUNT  # the live venue's ledger account, once there is one
        self.live_exchange: str | None = None  # whose trades that account books (kept after close())
        self._startup: list[Output] = []  # what start-up reconciliation found: out with the first input
        self._polled_at = -1  # close time of the candle the ccxt venue was last polled on
        # The paper venues' latest candles, for orders that come after their next candle (`_since`).
        # In memory only: after a restart a late order waits for the next candle instead.
        self._recent: dict[str, deque[CandleClosed]] = {}
        self._pg: AsyncEngine | None = None  # see `_db`

    def _db(self) -> AsyncEngine | None:
        """The agent's Postgres engine (a connection pool), made at first use and disposed by
        `close()`; None without Postgres."""
        if self.postgres_url is not None and self._pg is None:
            self._pg = create_engine(self.postgres_url)
        return self._pg

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
        settings = self.deps.settings
        if settings is not None and settings.execution.venue != "paper":
            self.live = await self._make_live(settings)
            self.account, self.live_exchange = settings.execution.venue, self.live.exchange
            try:
                await self._reconcile(self.live)
            except BaseException:
                await self.close()
                raise

    async def _reconcile(self, live: LiveVenue) -> None:
        """Bring the live venue and our books in line after a (re)start: what happened to the orders
        the store holds as open, the account's opening balances, orders we know nothing of."""
        engine = self._db()
        known = await OrderStore(engine).open_orders(live.exchange) if engine is not None else []
        # Cores never read the clock: start-up events are stamped with the newest time we hold
        # (a venue stamps fills with the exchange's own trade times anyway).
        now = max([k.ts_event for k in known] + list(self.state.last_open_time.values()), default=0)
        balances: dict[str, Decimal]
        if isinstance(live, CcxtVenue):
            result = await live.reconcile(known, now=now)
            events, balances = list(result.events), result.balances
            if result.foreign:
                self.deps.log.warning("foreign_orders_at_venue", exchange=live.exchange,
                                      client_order_ids=[o.client_order_id for o in result.foreign])
            if result.missing:  # stored as `new`, never reached the exchange: left for a person to decide
                self.deps.log.warning("orders_never_sent", exchange=live.exchange,
                                      client_order_ids=result.missing)
        else:
            events = []
            for update in known:
                if update.status == "submitted" and update.venue_order_id:
                    events += await live.resume(orders.Order.from_event(update), now=now)
                else:  # a `new` swap that was never sent: nothing to take over
                    self.deps.log.warning("orders_never_sent", exchange=live.exchange,
                                          client_order_ids=[update.client_order_id])
            balances = await live.fetch_balances()
        opened = await self._open_account(balances, now, live.exchange)
        self._book(events)
        self.state.unsaved += events
        self._startup = [*opened, *events]
        held = self.state.accounts[self.account].balances()
        if {a: v for a, v in held.items() if v} != {a: v for a, v in balances.items() if v}:
            # fees in another asset, deposits or trades made by hand: the books say what CryptIQ did
            self.deps.log.warning("venue_balances_differ", account=self.account,
                                  venue={a: str(v) for a, v in balances.items()},
                                  books={a: str(v) for a, v in held.items()})
        self.deps.log.info("venue_reconciled", account=self.account, exchange=live.exchange,
                           events=len(events), balances={a: str(v) for a, v in balances.items()})

    async def _open_account(self, balances: dict[str, Decimal], now: int,
                            exchange: str) -> list[AccountTransfer]:
        """The live account's books: from the saved state, else from Postgres, else opened now with
        the venue's balances (one deposit per asset, stored at once so a lost state reopens the same).
        Returns the account's transfers to announce (none when the saved state had the books)."""
        if self.account in self.state.accounts:
            return []
        engine = self._db()
        store = LedgerStore(engine) if engine is not None else None
        stored = await store.entries(self.account) if store is not None else []
        if stored:
            entries = [entry_from_record(r.kind, r.payload) for r in stored]
            ledger = Ledger.from_entries(entries)
            deposits = [e for e in entries if isinstance(e, Transfer)]
        else:
            deposits = [Transfer(transfer_id=f"{self.account}:opening:{asset}", asset=asset,
                                 amount=amount, ts_event=now)
                        for asset, amount in sorted(balances.items()) if amount > 0]
            ledger = Ledger.from_entries(deposits)
            if store is not None:
                await store.append(self.account, [LedgerRecord(**entry_record(d)) for d in deposits],
                                   state=self._books(ledger))
            self.deps.log.info("account_opened", account=self.account,
                               balances={d.asset: str(d.amount) for d in deposits})
        self.state.accounts[self.account] = ledger
        return [AccountTransfer(account=self.account, exchange=exchange, transfer_id=d.transfer_id,
                                asset=d.asset, amount=d.amount, ts_event=d.ts_event) for d in deposits]

    async def close(self) -> None:
        """Close the live venue's and Postgres connections (the host calls this once, when it stops)."""
        engine, self._pg = self._pg, None
        if engine is not None:
            await engine.dispose()
        live, self.live = self.live, None
        if isinstance(live, CcxtVenue):
            await live.close()
        elif isinstance(live, Web3Venue) and isinstance(live.w3.provider, AsyncHTTPProvider):
            await live.w3.provider.disconnect()  # its aiohttp sessions (other providers hold none of ours)

    async def checkpoint(self) -> None:
        """Postgres first (idempotent), then the state: a crash between them only repeats writes.

        Everything handled so far is on the broker when the runtime checkpoints, so the outbox
        (kept only to publish again after a crash) is emptied here.
        """
        state = self.state
        engine = self._db()
        if engine is not None and state.unsaved:
            await OrderStore(engine).record([e for e in state.unsaved if not isinstance(e, Transfer)])
            for account, ledger in [(ACCOUNT, state.ledger), *state.accounts.items()]:
                # transfers are the paper deposit (live accounts store their opening at once)
                entries = [LedgerRecord(**entry_record(e)) for e in state.unsaved
                           if (isinstance(e, Transfer) and account == ACCOUNT)
                           or (isinstance(e, OrderFilled) and self._account_of(e.exchange) == account)]
                await LedgerStore(engine).append(account, entries, state=self._books(ledger))
        state.unsaved = []
        state.outbox = {}
        await self._save()

    async def _save(self) -> None:
        await self.deps.store.save(STATE_KEY, pickle.dumps(self.state))

    @staticmethod
    def _books(ledger: Ledger) -> LedgerState:
        return LedgerState(version=ledger.version, ts=ledger.ts, state=ledger.snapshot())

    def _account_of(self, exchange: str) -> str:
        """The ledger account trades on `exchange` are booked in: the live venue's, or paper."""
        return self.account if exchange == self.live_exchange else ACCOUNT

    def _ledger(self, exchange: str) -> Ledger:
        account = self._account_of(exchange)
        return self.state.ledger if account == ACCOUNT else self.state.accounts[account]

    def _position(self, exchange: str, symbol: str) -> Decimal:
        """The signed quantity held of `symbol` in the account trades on `exchange` are booked in."""
        held = self._ledger(exchange).positions.get(symbol)
        return held.quantity if held is not None else Decimal(0)

    def _book(self, events: list[OrderEvent]) -> None:
        """Fills into their account's ledger, arming the entry's exits; an ended order's plan goes."""
        for event in events:
            if isinstance(event, OrderFilled):
                self._ledger(event.exchange).apply(event)
                self._arm(instrument_key(event.exchange, event.symbol), event)
        for event in events:  # after arming: a fill's `filled` update comes before the fill itself
            if isinstance(event, OrderUpdated) and event.status in orders.TERMINAL:
                self.state.plans.pop(event.client_order_id, None)

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        out = await self._handle(env)
        if not self._startup:
            return out
        # what start-up reconciliation found goes out first, caused by the first input
        found, self._startup = self._startup, []
        self.state.outbox[env.event_id] = found + self.state.outbox.get(env.event_id, [])
        return [*self._envelopes(env, found), *out]

    async def _handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
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
        engine = self._db()
        known = engine is not None and await OrderStore(engine).get(cid) is not None
        if known:
            self.state.remember(decision.decision_id)
            return []  # placed by an earlier life of this agent whose state was lost
        self.state.remember(decision.decision_id)
        venue = self._venue(decision.exchange, decision.symbol)
        market = venue.market(decision.symbol)  # None: unknown symbol, and create_order rejects it
        entry = decision.entry_price
        size = decision.size
        nothing_to_reduce = False
        if decision.sizing == "reduce_only" and market is not None:
            reducible = await self._reducible(venue, decision.symbol, decision.side, decision.size)
            nothing_to_reduce = reducible <= 0
            size = decision.size if nothing_to_reduce else reducible
        # a swap cannot rest: on-chain, a limit order fills at once (up to its price) or not at all
        time_in_force: TimeInForce = "IOC" if isinstance(venue, Web3Venue) else "GTC"
        request = OrderRequest(
            decision_id=decision.decision_id, exchange=decision.exchange, symbol=decision.symbol,
            side=decision.side, order_type=ORDER_TYPES[decision.entry_type], quantity=size,
            limit_price=self._price(market, entry) if decision.entry_type == "limit" else None,
            stop_price=self._price(market, entry) if decision.entry_type == "stop" else None,
            time_in_force=time_in_force, reference_price=entry,
        )
        order, events = create_order(request, market, now=env.ts)
        if order.status == "new" and nothing_to_reduce:
            # e.g. a strategy repeating its exit before the fill came back: refused, with the reason
            events += orders.reject(order, now=env.ts, reasons=[NOTHING_TO_REDUCE])[1]
        elif order.status == "new" and self.state.kill_switch_on:
            _, refused = orders.reject(order, now=env.ts, reasons=[self._blocked()])
            events += refused
            self.deps.log.warning("order_blocked_by_kill_switch", client_order_id=cid,
                                  decision_id=decision.decision_id)
        elif order.status == "new":
            plan = exit_plan(decision)
            if plan is not None:
                self.state.plans[cid] = plan
            try:
                placed = await self._place(venue, order, env.ts)
            except BaseException:
                # not placed as far as we know (e.g. a lost reply: retriable). Forget the decision, so
                # the retry places it again; a venue that got it finds it by its client order id.
                self.state.handled.pop(decision.decision_id, None)
                self.state.plans.pop(cid, None)
                raise
            if isinstance(venue, PaperVenue) and placed:  # a late order meets the candles it missed
                key = instrument_key(decision.exchange, decision.symbol)
                placed += venue.catch_up(cid, self._since(key, env.ts))
            self._book(placed)  # live venues may fill at once (a ccxt market order, a swap)
            events += placed
        return await self._publish(env, events)

    @staticmethod
    def _price(market: Market | None, price: Decimal | None) -> Decimal | None:
        """A decided price on the venue's tick (risk computes prices; the venue lists the tick);
        a price that is no number is left as it is, for the order checks to reject with a reason."""
        if market is None or price is None or not price.is_finite():
            return price
        return market.round_price(price)

    async def _place(self, venue: Venue, order: orders.Order, now: int) -> list[OrderEvent]:
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

    async def _reducible(self, venue: Venue, symbol: str, side: str, wanted: Decimal) -> Decimal:
        """How much a reducing order may still trade on `venue` (`execution.exits.reducible`, the
        rule the backtest applies too): the position less what its open orders already take off."""
        market = venue.market(symbol)
        assert market is not None
        quantity = self._position(venue.exchange, symbol)
        return reducible(market, quantity, side, wanted, await venue.fetch_open_orders(symbol))

    # -- the kill switch --

    async def _kill_switch(self, env: Envelope[Event], switch: KillSwitchChanged) -> list[Envelope[Event]]:
        if switch == self.state.kill_switch:
            return self._again(env)
        self.deps.log.warning("kill_switch_changed", engaged=switch.engaged, actor=switch.actor,
                              reason=switch.reason, at=switch.at)
        if not switch.engaged:
            self.state.kill_switch = switch
            await self._save()
            return []
        why = f"kill switch engaged by {switch.actor}: {switch.reason}"
        events: list[OrderEvent] = []
        venues: list[Venue] = [*self.state.venues.values(), *([self.live] if self.live is not None else [])]
        for venue in venues:
            for order in await venue.fetch_open_orders():
                try:
                    events += await venue.cancel(order.client_order_id, now=env.ts, reason=why)
                except DomainError as exc:  # a sent swap, or an order placed outside CryptIQ: left as it is
                    self.deps.log.warning("order_not_cancelled", exchange=venue.exchange,
                                          client_order_id=order.client_order_id, reason=str(exc))
        # Set once every cancel went out: a retriable failure above retries the whole input.
        self.state.kill_switch = switch
        self.deps.log.warning("orders_cancelled_by_kill_switch",
                              cancelled=sum(isinstance(e, OrderUpdated) for e in events))
        return await self._publish(env, events)

    # -- candles: fills and exits --

    async def _candle(self, env: Envelope[Event], candle: CandleClosed) -> list[Envelope[Event]]:
        if candle.open_time <= self.state.last_open_time.get(env.key, -1):
            return self._again(env)  # seen before: the venue already traded it
        self.state.last_open_time[env.key] = candle.open_time
        key = instrument_key(candle.exchange, candle.symbol)
        venue: Venue | None = self.state.venues.get(key)
        events: list[OrderEvent] = []
        if isinstance(venue, PaperVenue):
            events = venue.on_candle(candle)
        if self.live is None or candle.exchange != self.live.exchange:  # traded on paper
            self._recent.setdefault(key, deque(maxlen=RECENT_CANDLES)).append(candle)
        if self.live is not None:
            events += await self._live_changes(self.live, candle)
            if candle.exchange == self.live.exchange:
                venue = self.live
        self._book(events)
        self._ledger(candle.exchange).mark_candle(candle)
        if venue is not None and key in self.state.protections:
            exits = await self._protect(key, venue, candle)
            self._book(exits)  # a live exit may fill on arrival
            events += exits
        return await self._publish(env, events)

    async def _live_changes(self, live: LiveVenue, candle: CandleClosed) -> list[OrderEvent]:
        """What the live venue did since the last look: ccxt orders are polled on the first closed
        candle of each close time on its exchange; sent swaps are settled once their receipt is in."""
        if isinstance(live, CcxtVenue):
            if candle.exchange != live.exchange or candle.close_time <= self._polled_at:
                return []
            self._polled_at = candle.close_time
            return await live.poll(now=candle.close_time)
        events: list[OrderEvent] = []
        for order in await live.fetch_open_orders():  # in memory: swaps without a receipt yet
            events += await live.settle(order.client_order_id, now=candle.close_time, timeout=SETTLE_WAIT_S)
        return events

    def _arm(self, key: str, fill: OrderFilled) -> None:
        """An entry filled: protect the position with its decision's exits (the latest entry's win)."""
        plan = self.state.plans.get(fill.client_order_id)
        if plan is None:
            return
        quantity = self._position(fill.exchange, fill.symbol)
        armed = arm(plan, quantity, fill.price, self.state.protections.get(key))
        if armed is not None:  # None: the fill only reduced a position the other way, or re-armed
            self.state.protections[key] = armed

    async def _protect(self, key: str, venue: Venue, candle: CandleClosed) -> list[OrderEvent]:
        """Check the instrument's exits against the candle: an exit order if one is hit, else ratchet."""
        protection = self.state.protections[key]
        plan = protection.plan
        quantity = self._position(candle.exchange, candle.symbol)
        if not protection.covers(quantity):
            del self.state.protections[key]  # closed (or turned) by other orders: nothing to protect
            return []
        if protection.exit_cid is not None:
            sent = await venue.fetch_order(protection.exit_cid)
            if sent is not None and sent.is_open:
                return []  # the exit is working
        high, low = Decimal(repr(candle.high)), Decimal(repr(candle.low))
        stop = protection.current_stop
        kind = protection.reached(high, low)
        if kind is None or self.state.kill_switch_on:
            protection.ratchet(high, low)
            return []
        exit_side = protection.exit_side
        size = await self._reducible(venue, candle.symbol, exit_side, abs(quantity))
        if size <= 0:
            return []  # other open orders already close the position
        now = candle.close_time
        decision_id = protection.exit_decision_id(kind)
        request = OrderRequest(decision_id=decision_id, exchange=candle.exchange, symbol=candle.symbol,
                               side=exit_side, order_type="market", quantity=size,
                               reference_price=Decimal(repr(candle.close)))
        order, events = create_order(request, venue.market(candle.symbol), now=now)
        protection.sent(order.client_order_id)
        self.deps.log.info("exit_triggered", kind=kind, decision_id=decision_id, symbol=candle.symbol,
                           stop=str(stop), take_profit=str(plan.take_profit), low=str(low), high=str(high))
        if order.status == "new":
            events += await self._place(venue, order, now)
        if any(isinstance(e, OrderUpdated) and e.status == "rejected" for e in events):
            # e.g. a remnant below the venue's minimum: retrying every candle would only repeat it
            del self.state.protections[key]
            self.deps.log.warning("exit_rejected", decision_id=decision_id, symbol=candle.symbol)
        return events

    def _since(self, key: str, ts: int) -> list[CandleClosed]:
        """The instrument's candles already traded that open at or after `ts`, oldest first: the ones
        an order placed at `ts` should have met. Empty when decisions keep up with the market."""
        late: list[CandleClosed] = []
        for candle in reversed(self._recent.get(key, ())):
            if candle.open_time < ts:
                break
            late.append(candle)
        return late[::-1]

    def _venue(self, exchange: str, symbol: str) -> Venue:
        if self.live is not None and exchange == self.live.exchange:
            return self.live
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

    def _envelopes(self, env: Envelope[Event], events: list[Output]) -> list[Envelope[Event]]:
        out: list[Envelope[Event]] = []
        for event in events:
            if isinstance(event, AccountTransfer):
                out.append(Envelope.create(event, key=event.account, ts=event.ts_event, source=self.name,
                                           caused_by=env, discriminator=event.transfer_id))
                continue
            key = instrument_key(event.exchange, event.symbol)
            tag = event.trade_id if isinstance(event, OrderFilled) else f"{event.client_order_id}:{event.seq}"
            out.append(Envelope.create(event, key=key, ts=event.ts_event, source=self.name, caused_by=env,
                                       discriminator=tag))
        return out
