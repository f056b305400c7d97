"""The ccxt venue: a real exchange account (Binance, Blofin, Crypto.com, ...) behind the Venue port.

It places, amends, cancels and reads orders through a ccxt async exchange object, and turns what
the exchange reports into our order events (`OrderUpdated`, `OrderFilled`), like the paper venue.

* Client order ids. Every order is sent with our client order id (`cq-` + hash of the decision),
  in the parameter each exchange reads (`CLIENT_ID_PARAM`). Before sending, the venue looks the
  id up at the exchange (by client id where the exchange can, else in its open and recent
  orders), so a restarted agent that handles a decision again never sends it twice: it gets the
  events that bring its `new` order up to date with what the exchange did, and nothing is sent.
* Checks before sending: `execution.order.validate_request` against the exchange's own market
  rules (`market_from_ccxt`): unknown symbol, size or price not positive and finite, below the
  minimum amount or notional, finer than the step or tick. A rejected order carries the reasons.
  An order the exchange refuses (ccxt `InvalidOrder`, `InsufficientFunds`, `BadSymbol`,
  `BadRequest`, `OperationRejected`) is rejected with the exchange's message. A network failure
  while sending is a `RetriableError`: the order may or may not be live, and placing it again
  looks it up first, so the retry is safe.
* Fills are read from the exchange's trades of the order (`fetch_order_trades` on Binance, else
  `fetch_my_trades` filtered by order id), each applied once by trade id; after a restart, the
  oldest trades that make up the filled quantity we already hold are not applied again. An
  exchange that reports an order filled but lists no trade for the rest gets one fill for it that
  keeps the exchange's average price and total fee. Events a call found but could not return
  (an amendment refused because the order had traded) come with the next `poll()`, which reads
  every open order; `reconcile()` runs on start-up (see `Reconciliation`).
* Amending: Crypto.com amends in place (fills kept). Binance replaces the order (ccxt
  `edit_order` = cancelReplace) and Blofin has no amend, so there the venue cancels and places it
  again with the same client order id; both only before the first fill (after it, cancel and
  decide again). The order is read first, and one that has traded is not amended; on Blofin one
  that trades between the cancel and the new order is left cancelled, not replaced. (Binance's
  cancelReplace is one request: a fill in the instant between the read and it is not seen, and
  the new order is placed in full.)
* Contracts (e.g. Blofin's BTC/USDT:USDT): our quantities are in the base asset; the venue
  converts to and from contracts with the market's `contractSize`.
* Not supported yet (rejected with a reason, never sent): stop and stop-limit orders, IOC/FOK,
  `expire_at`.

Only this module (and the market-data shell) imports ccxt; ccxt errors become CryptIQ errors in
`translate_error`: credentials refused -> ConfigError, network/timeout/rate limit -> RetriableError,
an order-level refusal (e.g. OrderNotFound on a cancel) -> DomainError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import structlog

from config.errors import ConfigError, CryptiqError, DomainError, RetriableError
from config.settings import Settings, reveal
from execution import order as orders
from execution.market import Market
from execution.order import OPEN, Order, OrderRequest, validate_request
from execution.venue import UnknownOrderError
from topics.orders import Liquidity, OrderEvent, OrderFilled, OrderStatus, OrderUpdated

log = structlog.get_logger("cryptiq.execution.ccxt")

# The create_order parameter that carries our client order id (ccxt passes it on unchanged).
CLIENT_ID_PARAM: dict[str, str] = {
    "binance": "newClientOrderId", "blofin": "clientOrderId", "cryptocom": "client_oid",
}
# Exchanges whose fetch_order finds an order by client id: the parameter to pass it in.
FETCH_BY_CLIENT_ID: dict[str, str] = {"binance": "origClientOrderId"}
# Exchanges whose edit_order changes the order in place, keeping its fills.
AMENDS_IN_PLACE: frozenset[str] = frozenset({"cryptocom"})
# Exchanges whose fetch_order_trades asks for one order's trades (others: fetch_my_trades, filtered).
TRADES_BY_ORDER: frozenset[str] = frozenset({"binance"})
SUPPORTED_TYPES = ("market", "limit")
_STATUS: dict[str, OrderStatus] = {
    "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled", "expired": "expired",
    "rejected": "rejected",
}
_REFUSED = (
    ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.BadRequest, ccxt.OperationRejected,
)
_CREDENTIALS = {"apiKey": "api_key", "secret": "secret", "password": "password"}


def translate_error(exchange_id: str, action: str, exc: ccxt.BaseError) -> CryptiqError:
    """ccxt's errors as ours: retry (network, rate limit, garbled reply) or stop with a clear line.

    (The market-data shell has its own translation; execution may not import agents.)"""
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    where = f"{exchange_id} {action}"
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return ConfigError(
            f"{where}: {exchange_id} refused the credentials ({detail}): "
            f"check exchanges.{exchange_id}.api_key, secret and password"
        )
    if isinstance(exc, ccxt.OperationFailed):
        return RetriableError(f"{where} failed ({type(exc).__name__}: {detail}); retry")
    return CryptiqError(f"{where} failed ({type(exc).__name__}: {detail}): check the exchange's status")


def _dec(value: Any) -> Decimal | None:
    """A ccxt number (float, int or numeric string) as an exact Decimal of its shortest repr."""
    if value is None or value == "":
        return None
    return Decimal(str(value))


def contract_size(market: Mapping[str, Any]) -> Decimal:
    """Base units per ccxt amount unit: the contract size of a contract market, else 1."""
    size = _dec(market.get("contractSize")) if market.get("contract") else None
    return size if size is not None and size > 0 else Decimal(1)


def market_from_ccxt(exchange: str, market: Mapping[str, Any]) -> Market | None:
    """Our trading rules from a ccxt market structure (precision in ccxt's tick-size mode); None if
    the structure lacks a price or amount precision, so orders on it are rejected, not guessed."""
    precision = market.get("precision") or {}
    tick, step = _dec(precision.get("price")), _dec(precision.get("amount"))
    if tick is None or step is None or tick <= 0 or step <= 0:
        return None
    size = contract_size(market)
    limits = market.get("limits") or {}
    min_amount = _dec((limits.get("amount") or {}).get("min"))
    min_cost = _dec((limits.get("cost") or {}).get("min"))
    try:
        return Market(
            exchange, str(market["symbol"]), tick_size=tick, step_size=step * size,
            min_quantity=(min_amount * size) if min_amount is not None else step * size,
            min_notional=min_cost if min_cost is not None else Decimal(0),
        )
    except ValueError:  # rules our Market cannot hold (a negative minimum, a symbol not BASE/QUOTE)
        return None


@dataclass(frozen=True)
class Reconciliation:
    """What start-up reconciliation found, for the execution agent to persist and act on.

    * `events`: order changes and fills the agent missed (persist with `OrderStore.record`,
      fills into the ledger, publish on `orders` / `execution.reports`), in the order they apply.
    * `balances`: the account's total per asset at the venue, to compare with the ledger.
    * `foreign`: open orders at the venue that no known order accounts for (placed by hand or by
      another system); reported, never touched.
    * `missing`: client order ids we hold as open that the venue has never seen: `new` orders
      whose sending was interrupted. Placing them again is safe (`place` looks them up first).
    """

    events: list[OrderEvent] = field(default_factory=list)
    balances: dict[str, Decimal] = field(default_factory=dict)
    foreign: list[Order] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def fills(self) -> list[OrderFilled]:
        return [e for e in self.events if isinstance(e, OrderFilled)]


class CcxtVenue:
    """An exchange account through a ccxt async exchange object; implements `execution.venue.Venue`."""

    def __init__(self, client: Any, *, exchange: str | None = None) -> None:
        self.client = client
        self.exchange = exchange or str(client.id)
        self._orders: dict[str, Order] = {}  # every order this venue object placed or adopted
        self._applied: dict[str, dict[str, Decimal]] = {}  # client order id -> {venue trade id: quantity}
        self._markets: dict[str, Market | None] = {}
        self._cancel_reasons: dict[str, str] = {}  # cancels sent, by client order id: why
        self._fees: dict[str, Decimal] = {}  # client order id -> fees booked from its trades (this life)
        self._unreported: list[OrderEvent] = []  # found by a call that could not return them: next poll

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_settings(cls, settings: Settings, exchange_id: str) -> CcxtVenue:
        """A venue for `exchanges.<exchange_id>` with its keys; ConfigError naming a missing key."""
        klass = getattr(ccxt_async, exchange_id, None)
        if klass is None or not isinstance(klass, type):
            raise ConfigError(f"{exchange_id!r} is not a ccxt exchange id (e.g. binance, blofin, cryptocom)")
        config = settings.exchanges.get(exchange_id)
        if config is None:
            raise ConfigError(
                f"exchanges.{exchange_id} is not configured: set exchanges.{exchange_id}.api_key and secret"
            )
        options: dict[str, Any] = {
            "enableRateLimit": True, "options": {"warnOnFetchOpenOrdersWithoutSymbol": False},
        }
        required = klass().requiredCredentials
        for ccxt_key, our_key in _CREDENTIALS.items():
            value = reveal(getattr(config, our_key))
            if required.get(ccxt_key) and not value:
                raise ConfigError(
                    f"exchanges.{exchange_id}.{our_key} is not set: {exchange_id} needs it to trade"
                )
            if value:
                options[ccxt_key] = value
        client = klass(options)
        if config.sandbox:
            try:
                client.set_sandbox_mode(True)
            except ccxt.NotSupported as exc:
                raise ConfigError(f"exchanges.{exchange_id}.sandbox is true but {exchange_id} has no "
                                  "sandbox: set it to false") from exc
        return cls(client, exchange=exchange_id)

    async def load_markets(self) -> None:
        """Load the exchange's markets unless the client already has them."""
        if not self.client.markets:
            await self._call("load_markets")

    async def close(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------ the Venue port

    def market(self, symbol: str) -> Market | None:
        if symbol not in self._markets:
            raw = (self.client.markets or {}).get(symbol)
            self._markets[symbol] = market_from_ccxt(self.exchange, raw) if raw else None
        return self._markets[symbol]

    async def place(self, order: Order, *, now: int) -> list[OrderEvent]:
        cid = order.client_order_id
        if cid in self._orders:
            return []
        if order.status != "new":
            raise DomainError(f"order {cid} is {order.status}: only a new order can be placed")
        reasons = self._refusals(order, now=now)
        if reasons:
            placed, events = orders.reject(order, now=now, reasons=reasons)
            self._orders[cid] = placed
            return events
        found = await self._find(cid, order.symbol)
        self._orders[cid] = order
        if found is not None:  # sent by an earlier life of the caller: adopt it, send nothing
            log.info("order_found_at_venue", exchange=self.exchange, client_order_id=cid,
                     venue_order_id=found["id"])
            return await self._catch_up(cid, found, now=now)
        return await self._send(order, now=now)

    async def cancel(
        self, client_order_id: str, *, now: int, reason: str = "cancel requested"
    ) -> list[OrderEvent]:
        current = self._known(client_order_id)
        if not current.is_open:
            return []
        # DomainError: the exchange no longer has it open; what happened is in its state
        with contextlib.suppress(DomainError):
            await self._call("cancel_order", current.venue_order_id, current.symbol)
        # An exchange that cancels asynchronously (Crypto.com) may still show it open: the
        # cancellation, with this reason, then comes with a later poll.
        self._cancel_reasons[client_order_id] = reason
        return await self._sync(client_order_id, now=now)

    async def modify(
        self, client_order_id: str, *, now: int, quantity: Decimal | None = None,
        limit_price: Decimal | None = None, stop_price: Decimal | None = None,
    ) -> list[OrderEvent]:
        current = self._known(client_order_id)
        market = self.market(current.symbol)
        if market is None:
            raise DomainError(f"{current.symbol} is not listed on {self.exchange}")
        changed, events = orders.amend(
            current, market, now=now, quantity=quantity, limit_price=limit_price, stop_price=stop_price
        )
        reasons = events[0].reasons if isinstance(events[0], OrderUpdated) else []
        if self.exchange in AMENDS_IN_PLACE:
            raw = await self._call(
                "edit_order", current.venue_order_id, current.symbol, current.order_type, current.side,
                self._amount(market, changed.quantity), _float(changed.limit_price),
            )
        else:
            if current.filled_quantity > 0:
                raise DomainError(
                    f"order {client_order_id}: {self.exchange} replaces an order to amend it, which would "
                    "lose track of its fills: cancel it and decide again"
                )
            news = await self._sync(client_order_id, now=now)  # a fill we have not seen yet?
            if news:
                self._unreported += news
                raise DomainError(
                    f"order {client_order_id} traded or ended before it could be amended: not amended "
                    "(its fills come with the next poll)"
                )
            raw = await self._replace(current, changed, market)
            if raw is None:  # it traded while being replaced: it stays cancelled with its fills
                return await self._sync(client_order_id, now=now, cancel_reason="cancelled to be amended, "
                                        "but it traded meanwhile: not replaced")
        venue_id = str(raw.get("id") or current.venue_order_id)
        changed = replace(changed, venue_order_id=venue_id)
        self._orders[client_order_id] = changed
        return [changed.event(current.status, reasons)]

    async def fetch_order(self, client_order_id: str) -> Order | None:
        known = self._orders.get(client_order_id)
        if known is not None and known.venue_order_id is None:
            return known  # rejected before sending
        raw = await (self._by_venue_id(known) if known is not None else self._find(client_order_id, None))
        if raw is None:
            return known
        return self._view(raw, known)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        raws = await self._call("fetch_open_orders", symbol)
        views = [self._view(raw, self._orders.get(str(raw.get("clientOrderId") or ""))) for raw in raws]
        return sorted(views, key=lambda o: (o.ts_event, o.client_order_id))

    async def fetch_balances(self) -> dict[str, Decimal]:
        balance = await self._call("fetch_balance")
        totals = balance.get("total") or {}
        amounts = {asset: _dec(total) for asset, total in totals.items()}
        return {asset: amount for asset, amount in sorted(amounts.items()) if amount}

    # ------------------------------------------------------------------ beyond the port

    async def poll(self, *, now: int) -> list[OrderEvent]:
        """Fills and state changes of every open order since the last look."""
        events, self._unreported = self._unreported, []
        for cid in [cid for cid, o in self._orders.items() if o.is_open]:
            events += await self._sync(cid, now=now)
        return events

    async def reconcile(self, known: Iterable[OrderUpdated], *, now: int) -> Reconciliation:
        """Start-up: bring the orders we hold as open (`OrderStore.open_orders(exchange)`) up to date
        with the venue, list the open orders we know nothing of, and read the balances."""
        await self.load_markets()
        result = Reconciliation()
        for update in known:
            if update.exchange != self.exchange or update.status not in ("new", *OPEN):
                continue
            cid = update.client_order_id
            order = self._orders.setdefault(cid, Order.from_event(update))  # what we hold, if further on
            if order.status == "new":
                found = await self._find(cid, order.symbol)
                if found is None:
                    del self._orders[cid]  # never sent: `place` may send it
                    result.missing.append(cid)
                else:
                    result.events.extend(await self._catch_up(cid, found, now=now))
            elif order.is_open:
                result.events.extend(await self._sync(cid, now=now))
        ours = set(self._orders)
        result.foreign.extend(o for o in await self.fetch_open_orders() if o.client_order_id not in ours)
        result.balances.update(await self.fetch_balances())
        log.info("venue_reconciled", exchange=self.exchange, events=len(result.events),
                 foreign=len(result.foreign), missing=len(result.missing))
        return result

    # ------------------------------------------------------------------ internals

    def _known(self, client_order_id: str) -> Order:
        try:
            return self._orders[client_order_id]
        except KeyError:
            raise UnknownOrderError(self.exchange, client_order_id) from None

    def _refusals(self, order: Order, *, now: int) -> list[str]:
        if order.exchange != self.exchange:
            return [f"sent to {self.exchange}"]
        if order.order_type not in SUPPORTED_TYPES:
            return [f"{order.order_type} orders are not supported on {self.exchange} yet"]
        if order.time_in_force != "GTC" or order.expire_at is not None:
            return [f"only good-till-cancelled orders are supported on {self.exchange} yet "
                    f"(time_in_force {order.time_in_force}, expire_at {order.expire_at})"]
        request = OrderRequest(
            decision_id=order.decision_id, exchange=order.exchange, symbol=order.symbol, side=order.side,
            order_type=order.order_type, quantity=order.quantity, limit_price=order.limit_price,
            stop_price=order.stop_price, time_in_force=order.time_in_force, expire_at=order.expire_at,
        )
        return validate_request(request, self.market(order.symbol), now=now)

    async def _send(self, order: Order, *, now: int) -> list[OrderEvent]:
        market = self.market(order.symbol)
        assert market is not None  # checked by _refusals
        cid = order.client_order_id
        params = {CLIENT_ID_PARAM.get(self.exchange, "clientOrderId"): cid}
        try:
            raw = await self.client.create_order(
                order.symbol, order.order_type, order.side, self._amount(market, order.quantity),
                _float(order.limit_price), params,
            )
        except _REFUSED as exc:
            detail = " ".join(str(exc).split())[:300] or type(exc).__name__
            why = f"{self.exchange} refused the order: {detail}"
            placed, events = orders.reject(order, now=now, reasons=[why])
            self._orders[cid] = placed
            return events
        except ccxt.BaseError as exc:
            del self._orders[cid]  # unknown outcome: placing again looks it up first
            raise translate_error(self.exchange, f"create_order {order.symbol}", exc) from exc
        placed, events = orders.submit(order, now=now, venue_order_id=str(raw["id"]))
        self._orders[cid] = placed
        log.info("order_submitted", exchange=self.exchange, client_order_id=cid, venue_order_id=raw["id"])
        if order.order_type == "market" or raw.get("filled") or _STATUS.get(str(raw.get("status"))):
            events += await self._sync(cid, now=now)  # it traded (or ended) on arrival
        return events

    async def _replace(self, current: Order, changed: Order, market: Market) -> dict[str, Any] | None:
        """Amend by replacing (Binance's cancelReplace, or cancel + place on exchanges without an
        amend); the new order keeps the client order id. None if the old one traded meanwhile."""
        params = {CLIENT_ID_PARAM.get(self.exchange, "clientOrderId"): current.client_order_id}
        amount, price = self._amount(market, changed.quantity), _float(changed.limit_price)
        if self.client.has.get("editOrder") is True:
            return dict(await self._call(
                "edit_order", current.venue_order_id, current.symbol, current.order_type, current.side,
                amount, price, params,
            ))
        await self._call("cancel_order", current.venue_order_id, current.symbol)
        old = await self._by_venue_id(current)
        if old is not None and (_dec(old.get("filled")) or 0) > 0:
            return None
        return dict(await self._call(
            "create_order", current.symbol, current.order_type, current.side, amount, price, params
        ))

    async def _find(self, cid: str, symbol: str | None) -> dict[str, Any] | None:
        """The exchange's order with client order id `cid`: open first, else the newest."""
        param = FETCH_BY_CLIENT_ID.get(self.exchange)
        if param is not None and symbol is not None:
            try:
                return dict(await self.client.fetch_order(None, symbol, {param: cid}))
            except ccxt.OrderNotFound:
                return None
            except ccxt.BaseError as exc:
                raise translate_error(self.exchange, f"fetch_order {cid}", exc) from exc
        matches = [raw for raw in await self._listed(symbol) if raw.get("clientOrderId") == cid]
        return _preferred(matches)

    async def _listed(self, symbol: str | None) -> list[dict[str, Any]]:
        """Open and recent orders of `symbol`; without a symbol, only the open ones (not every
        exchange lists its history across symbols)."""
        raws = list(await self._call("fetch_open_orders", symbol))
        if symbol is None:
            pass
        elif self.client.has.get("fetchOrders") is True:
            raws += await self._call("fetch_orders", symbol)
        elif self.client.has.get("fetchClosedOrders"):
            raws += await self._call("fetch_closed_orders", symbol)
        return [dict(raw) for raw in raws]

    async def _by_venue_id(self, order: Order) -> dict[str, Any] | None:
        if self.client.has.get("fetchOrder") is True:
            try:
                return dict(await self.client.fetch_order(order.venue_order_id, order.symbol))
            except ccxt.OrderNotFound:
                return None
            except ccxt.BaseError as exc:
                raise translate_error(self.exchange, f"fetch_order {order.client_order_id}", exc) from exc
        listed = await self._listed(order.symbol)
        return _preferred([raw for raw in listed if raw.get("id") == order.venue_order_id])

    async def _trades(self, order: Order, raw: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The exchange's trades of the order, oldest first."""
        venue_id = str(raw.get("id") or order.venue_order_id)
        if self.exchange in TRADES_BY_ORDER:
            trades = await self._call("fetch_order_trades", venue_id, order.symbol)
        else:
            trades = await self._call("fetch_my_trades", order.symbol, raw.get("timestamp"))
        mine = [dict(t) for t in trades if str(t.get("order")) == venue_id]
        return sorted(mine, key=lambda t: (t.get("timestamp") or 0, str(t.get("id"))))

    async def _catch_up(self, cid: str, raw: Mapping[str, Any], *, now: int) -> list[OrderEvent]:
        """Our `new` order, found live at the exchange: submitted, then what it did since."""
        order = self._orders[cid]
        submitted, events = orders.submit(order, now=now, venue_order_id=str(raw["id"]))
        self._orders[cid] = submitted
        return events + await self._sync(cid, now=now, raw=raw)

    async def _sync(
        self, cid: str, *, now: int, raw: Mapping[str, Any] | None = None, cancel_reason: str | None = None
    ) -> list[OrderEvent]:
        """Events that bring our order in line with the exchange's: new fills, then its end."""
        order = self._orders[cid]
        raw = raw if raw is not None else await self._by_venue_id(order)
        if raw is None:
            return []
        market = self.market(order.symbol)
        assert market is not None
        events: list[OrderEvent] = []
        applied = self._applied.setdefault(cid, {})
        venue_filled = self._base(market, raw.get("filled")) or Decimal(0)
        if venue_filled > order.filled_quantity:
            # Fills we hold but cannot name (an order restored from the store after a restart) are
            # the oldest trades: they are counted, not applied again.
            unnamed = order.filled_quantity - sum(applied.values(), Decimal(0))
            for trade in await self._trades(order, raw):
                trade_id = str(trade["id"])
                if trade_id in applied or not order.is_open:
                    continue
                quantity = self._base(market, trade.get("amount")) or Decimal(0)
                if unnamed > 0:
                    unnamed -= quantity
                else:
                    order, step = self._fill(order, trade, market, now=now)
                    events += step
                    self._fees[cid] = self._fees.get(cid, Decimal(0)) + sum(
                        (e.fee for e in step if isinstance(e, OrderFilled)), Decimal(0)
                    )
                applied[trade_id] = quantity
        status = _STATUS.get(str(raw.get("status")))
        if status == "filled" and order.is_open and order.remaining > 0:
            # fees of fills we hold but did not book in this life are unknown: then none is charged
            named = sum(applied.values(), Decimal(0)) == order.filled_quantity
            booked = self._fees.get(cid, Decimal(0)) if named else None
            order, step = self._rest_filled(order, raw, market, now=now, fees_booked=booked)
            events += step
        if status == "rejected" and order.status == "partially_filled":
            status = "cancelled"  # the exchange ended an order that had traded: the rest is cancelled
        if order.is_open and status in ("cancelled", "expired", "rejected"):
            why = cancel_reason or self._cancel_reasons.pop(cid, None) or f"{status} at {self.exchange}"
            command = {"cancelled": orders.cancel, "expired": orders.expire}.get(status)
            if command is not None:
                order, step = command(order, now=now, reason=why)
            else:  # rejected after acceptance: only legal from submitted
                order, step = orders.transition(order, "rejected", now=now, reasons=[why])
            events += step
        self._orders[cid] = order
        return events

    def _rest_filled(
        self, order: Order, raw: Mapping[str, Any], market: Market, *, now: int, fees_booked: Decimal | None
    ) -> orders.Step:
        """The exchange says the order is filled but listed no trade for the rest: one fill for
        it, at the price that makes the order's average the exchange's, charged the order's fee
        less the fees already booked (none if those are unknown)."""
        average = _dec(raw.get("average")) or _dec(raw.get("price")) or order.limit_price
        if average is None or average <= 0:
            raise DomainError(f"order {order.client_order_id}: {self.exchange} says it is filled but "
                              "gives no trade and no price for it")
        price = (order.quantity * average - order.filled_notional) / order.remaining
        price = _on_step(price if price > 0 else average, market.tick_size)
        fee = raw.get("fee") or {}
        total = abs(_dec(fee.get("cost")) or Decimal(0))
        cost = max(total - fees_booked, Decimal(0)) if fees_booked is not None else Decimal(0)
        return orders.fill(
            order, now=_ts(raw.get("lastTradeTimestamp"), now), price=price, quantity=order.remaining,
            fee=cost, fee_asset=str(fee.get("currency") or market.quote), liquidity="taker",
        )

    def _fill(self, order: Order, trade: Mapping[str, Any], market: Market, *, now: int) -> orders.Step:
        quantity = self._base(market, trade.get("amount")) or Decimal(0)
        price = _on_step(_dec(trade.get("price")) or Decimal(0), market.tick_size)
        fee = trade.get("fee") or {}
        cost = _dec(fee.get("cost")) or Decimal(0)
        liquidity: Liquidity = "maker" if trade.get("takerOrMaker") == "maker" else "taker"
        return orders.fill(
            order, now=_ts(trade.get("timestamp"), now), price=price, quantity=min(quantity, order.remaining),
            fee=abs(cost), fee_asset=str(fee.get("currency") or market.quote), liquidity=liquidity,
            trade_id=f"{self.exchange}:{trade['id']}",
        )

    def _view(self, raw: Mapping[str, Any], known: Order | None) -> Order:
        """The exchange's order as our Order (no events; `known` supplies what only we know)."""
        symbol = str(raw.get("symbol") or (known.symbol if known else ""))
        market = self.market(symbol)
        size = contract_size((self.client.markets or {}).get(symbol) or {})
        filled = (_dec(raw.get("filled")) or Decimal(0)) * size
        quantity = (_dec(raw.get("amount")) or Decimal(0)) * size
        if market is not None:
            filled, quantity = _on_step(filled, market.step_size), _on_step(quantity, market.step_size)
        average = _dec(raw.get("average"))
        status = _STATUS.get(str(raw.get("status"))) or ("partially_filled" if filled > 0 else "submitted")
        cid = str(raw.get("clientOrderId") or f"venue-{raw.get('id')}")
        base = known or Order(
            client_order_id=cid, decision_id=f"unknown:{cid}", exchange=self.exchange, symbol=symbol,
            side=raw.get("side") or "buy", order_type="limit" if raw.get("type") == "limit" else "market",
            time_in_force="GTC", quantity=quantity, limit_price=_dec(raw.get("price")), stop_price=None,
            expire_at=None, status=status,
        )
        return replace(
            base, status=status, quantity=quantity or base.quantity, filled_quantity=filled,
            filled_notional=filled * average if average is not None else base.filled_notional,
            venue_order_id=str(raw.get("id")), ts_event=_ts(raw.get("timestamp"), base.ts_event),
        )

    def _amount(self, market: Market, quantity: Decimal) -> float:
        """Our base quantity in the exchange's amount unit (contracts on contract markets)."""
        size = contract_size((self.client.markets or {}).get(market.symbol) or {})
        return float(quantity / size)

    def _base(self, market: Market, amount: Any) -> Decimal | None:
        value = _dec(amount)
        if value is None:
            return None
        size = contract_size((self.client.markets or {}).get(market.symbol) or {})
        return _on_step(value * size, market.step_size)

    async def _call(self, method: str, *args: Any) -> Any:
        """A ccxt call with its errors translated; InvalidOrder (e.g. OrderNotFound) as DomainError."""
        try:
            return await getattr(self.client, method)(*args)
        except ccxt.InvalidOrder as exc:
            raise DomainError(f"{self.exchange} {method}: {' '.join(str(exc).split())[:300]}") from exc
        except ccxt.BaseError as exc:
            raise translate_error(self.exchange, method, exc) from exc


def _preferred(raws: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of several exchange orders with one client id (a replaced order), the open one, else the newest."""
    if not raws:
        return None
    return max(raws, key=lambda r: (r.get("status") == "open", r.get("timestamp") or 0, str(r.get("id"))))


def _on_step(value: Decimal, step: Decimal) -> Decimal:
    """`value` at the nearest multiple of `step`, written with the step's decimals: the float noise of
    ccxt's parsing removed."""
    return ((value / step).to_integral_value() * step).quantize(step)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _ts(value: Any, default: int) -> int:
    return int(value) if value is not None else default
