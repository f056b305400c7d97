"""Real ccxt exchange objects whose HTTP layer answers from recorded exchange responses.

Only the network is replaced: `exchange.fetch`, the single HTTP entry point of ccxt's async
Exchange, goes to a `SimulatedExchange`, a small account (orders, trades, balances) that answers
each request ccxt makes with a reply built from the exchange's recorded reply for that call
(fixtures/ccxt/<id>_responses.json, see PROVENANCE.md): the recorded body is the template, and
only the values that depend on the request or the account (ids, client ids, amounts, prices,
fills, status, times) are put in. ccxt builds and signs every request, parses every reply and maps
error bodies to its exceptions (`handle_errors`), so a wrong request gets a wrong answer.

Requests are matched by HTTP method and path (and, for Crypto.com, the JSON-RPC method in the
body); every request is logged in `requests`, so a test can assert that no order was sent.
The exchange's state lives in the simulated exchange, not in the ccxt object, so a "restart"
is a new ccxt object (`client()`) and a new venue over the same `SimulatedExchange`.

(tests/market_data/test_ccxt_source.py replays candles the same way for market data; its helper
serves candle streams only, so this one is separate.)
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import ccxt
import ccxt.async_support as ccxt_async

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
T0 = 1_767_225_600_000  # the simulated exchange clock starts at 2026-01-01T00:00:00Z, +1 ms per request
D = Decimal


def recorded(exchange_id: str, method: str) -> Any:
    """The recorded (or documented) reply of `method` in the fixture file of `exchange_id`."""
    methods = json.loads((FIXTURES / f"{exchange_id}_responses.json").read_text())["methods"]
    return copy.deepcopy(methods[method]["httpResponse"])


def recorded_error(exchange_id: str, name: str) -> tuple[int, Any]:
    """A recorded (or documented) error reply: (HTTP status, body)."""
    entry = json.loads((FIXTURES / f"{exchange_id}_responses.json").read_text())["methods"][name]
    return int(entry["status"]), copy.deepcopy(entry["httpResponse"])


def recorded_markets(exchange: Any) -> list[dict[str, Any]]:
    """The recorded ccxt market structures, completed with ccxt's defaults for newer keys."""
    markets = json.loads((FIXTURES / f"{exchange.id}_markets.json").read_text()).values()
    return [exchange.safe_market_structure(m) for m in markets]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    name: str = ""  # the JSON-RPC method, for Crypto.com


@dataclass
class SimOrder:
    id: str
    cid: str
    market_id: str
    side: str  # buy | sell
    type: str  # limit | market
    amount: Decimal
    price: Decimal | None
    created: int
    filled: Decimal = field(default_factory=Decimal)
    cost: Decimal = field(default_factory=Decimal)
    fee: Decimal = field(default_factory=Decimal)
    status: str = "open"  # open | filled | canceled
    updated: int = 0

    @property
    def average(self) -> Decimal:
        return self.cost / self.filled if self.filled else D(0)


@dataclass
class SimTrade:
    id: str
    order: SimOrder
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    ts: int


@dataclass
class SimulatedExchange:
    """One exchange account. Market orders fill at once at `market_price`; limit orders rest until
    a test calls `fill`. `refuse_next_create` answers the next create, and `fail_next` the next
    request of any kind, with that recorded error; `lose_next_create_reply` places the next order
    but raises ccxt's RequestTimeout instead of replying, as when the connection drops after the
    exchange took the order."""

    exchange_id: ClassVar[str]
    market_id: ClassVar[str]
    fee_asset: ClassVar[str] = "USDT"
    contract_size: ClassVar[Decimal] = D(1)  # base units per amount unit

    market_price: Decimal = field(default_factory=lambda: D("43500"))
    balances: dict[str, tuple[str, str]] = field(default_factory=dict)  # asset -> (free, used)
    orders: list[SimOrder] = field(default_factory=list)
    trades: list[SimTrade] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    refuse_next_create: str | None = None
    fail_next: str | None = None
    lose_next_create_reply: bool = False
    cancels_later: bool = False  # acknowledge a cancel, carry it out at `settle_cancels()`
    before_next_cancel: Callable[[], Any] | None = None  # what happens just before the next cancel
    hide_trades: bool = False  # list no trades (as an exchange whose trade history has expired)
    _cancelling: list[SimOrder] = field(default_factory=list)
    clock: int = T0
    _ids: Any = field(default_factory=lambda: itertools.count(9_000_000_001))

    def client(self) -> Any:
        """A new ccxt exchange object (a fresh process, say) on this account."""
        klass = getattr(ccxt_async, self.exchange_id)
        exchange = klass({
            "apiKey": "test-key", "secret": "dGVzdC1zZWNyZXQ=", "password": "test-pass",
            "enableRateLimit": False,  # nothing to protect: the exchange is simulated
            "options": {"warnOnFetchOpenOrdersWithoutSymbol": False},
        })
        exchange.set_markets(recorded_markets(exchange))
        exchange.fetch = self._fetcher(exchange)
        return exchange

    def _fetcher(self, exchange: Any) -> Any:
        async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            parts = urlsplit(url)
            params: dict[str, Any] = dict(parse_qsl(parts.query))
            name = ""
            if body:
                decoded = json.loads(body) if body.lstrip().startswith("{") else dict(parse_qsl(body))
                name = decoded.get("method", "") if "params" in decoded else ""
                params.update(decoded.get("params", decoded) if name else decoded)
            self.clock += 1
            request = Request(method, parts.path, params, name)
            self.requests.append(request)
            if self.fail_next is not None:
                name, self.fail_next = self.fail_next, None
                status, reply = recorded_error(self.exchange_id, name)
            elif self.refuse_next_create is not None and self.is_create(request):
                name, self.refuse_next_create = self.refuse_next_create, None
                status, reply = recorded_error(self.exchange_id, name)
            else:
                status, reply = self.answer(request)
            text = json.dumps(reply)
            # what ccxt's own fetch does with a reply: the exchange's error mapping, then the status
            exchange.handle_errors(status, "", url, method, {}, text, reply, headers, body)
            exchange.handle_http_status_code(status, "", url, method, text)
            if self.lose_next_create_reply and self.is_create(request):
                self.lose_next_create_reply = False
                raise ccxt.RequestTimeout(f"{self.exchange_id} simulated: the reply to {parts.path} was lost")
            return reply
        return fetch

    # ---------------------------------------------------------------- what tests use

    def creates(self) -> list[Request]:
        """Every request that placed an order."""
        return [r for r in self.requests if self.is_create(r)]

    def order(self, cid: str) -> SimOrder:
        return [o for o in self.orders if o.cid == cid][-1]

    def fill(self, cid: str, amount: str, price: str, *, fee: str = "0", maker: bool = True) -> SimTrade:
        """The exchange matched `amount` of the open order `cid` at `price`."""
        return self._trade(self.order(cid), D(amount), D(price), D(fee), maker)

    def place_by_hand(self, cid: str, side: str, amount: str, price: str) -> SimOrder:
        """An order someone placed outside CryptIQ (e.g. on the exchange's website)."""
        return self._create(cid, side, "limit", D(amount), D(price))

    # ---------------------------------------------------------------- the account

    def _create(self, cid: str, side: str, type_: str, amount: Decimal, price: Decimal | None) -> SimOrder:
        order = SimOrder(str(next(self._ids)), cid, self.market_id, side, type_, amount, price,
                         created=self.clock, updated=self.clock)
        self.orders.append(order)
        if type_ == "market":
            fee = amount * self.contract_size * self.market_price * D("0.001")  # a 0.1% taker fee
            self._trade(order, amount, self.market_price, fee, False)
        return order

    def _trade(self, order: SimOrder, amount: Decimal, price: Decimal, fee: Decimal, maker: bool) -> SimTrade:
        assert order.status == "open", f"order {order.cid} is {order.status}"
        assert amount <= order.amount - order.filled, f"order {order.cid} has less than {amount} left"
        self.clock += 1
        trade = SimTrade(str(next(self._ids)), order, price, amount, fee, self.fee_asset, maker, self.clock)
        self.trades.append(trade)
        order.filled += amount
        order.cost += amount * price
        order.fee += fee
        order.updated = self.clock
        if order.filled == order.amount:
            order.status = "filled"
        return trade

    def visible_trades(self) -> list[SimTrade]:
        return [] if self.hide_trades else self.trades

    def settle_cancels(self) -> None:
        """Carry out the cancels acknowledged while `cancels_later` was on."""
        for order in self._cancelling:
            self._cancel(order, now=True)
        self._cancelling.clear()

    def _cancel(self, order: SimOrder, *, now: bool = False) -> SimOrder:
        if self.before_next_cancel is not None:
            happens, self.before_next_cancel = self.before_next_cancel, None
            happens()
        if self.cancels_later and not now:
            self._cancelling.append(order)
            return order
        if order.status == "open":
            order.status = "canceled"
            order.updated = self.clock
        return order

    def _find(self, *, order_id: Any = None, cid: Any = None) -> SimOrder | None:
        for order in reversed(self.orders):
            if (order_id is not None and order.id == str(order_id)) or (cid is not None and order.cid == cid):
                return order
        return None

    # ---------------------------------------------------------------- per exchange

    def is_create(self, request: Request) -> bool:
        raise NotImplementedError

    def answer(self, request: Request) -> tuple[int, Any]:
        raise NotImplementedError


def _n(value: Decimal | None, places: int = 8) -> str:
    return format(value if value is not None else D(0), f".{places}f")


class BinanceExchange(SimulatedExchange):
    """Binance spot (/api/v3), BTC/USDT."""

    exchange_id = "binance"
    market_id = "BTCUSDT"
    _STATUS: ClassVar[dict[str, str]] = {"open": "NEW", "filled": "FILLED", "canceled": "CANCELED"}

    def is_create(self, request: Request) -> bool:
        return request.method == "POST" and request.path in ("/api/v3/order", "/api/v3/order/cancelReplace")

    def answer(self, request: Request) -> tuple[int, Any]:  # noqa: PLR0911 (one return per endpoint)
        p, route = request.params, (request.method, request.path)
        if route == ("POST", "/api/v3/order"):
            return 200, self._created(self._new(p))
        if route == ("POST", "/api/v3/order/cancelReplace"):
            old = self._find(order_id=p.get("cancelOrderId"), cid=p.get("cancelOrigClientOrderId"))
            if old is None or old.status != "open":
                return recorded_error("binance", "errorOrderNotFound")
            self._cancel(old)
            new = self._new(p)
            reply = recorded("binance", "editOrder")
            reply["cancelResponse"], reply["newOrderResponse"] = self._cancelled(old), self._created(new)
            return 200, reply
        if route in (("GET", "/api/v3/order"), ("DELETE", "/api/v3/order")):
            order = self._find(order_id=p.get("orderId"), cid=p.get("origClientOrderId"))
            if order is None:
                return recorded_error("binance", "errorOrderNotFound")
            if request.method == "DELETE":
                if order.status != "open":
                    return recorded_error("binance", "errorOrderNotFound")
                return 200, self._cancelled(self._cancel(order))
            return 200, self._order(order)
        if route == ("GET", "/api/v3/openOrders"):
            return 200, [self._order(o) for o in self.orders if o.status == "open"]
        if route == ("GET", "/api/v3/allOrders"):
            return 200, [self._order(o) for o in self.orders]
        if route == ("GET", "/api/v3/myTrades"):
            trades = [t for t in self.visible_trades() if "orderId" not in p or t.order.id == p["orderId"]]
            trades = [t for t in trades if t.ts >= int(p.get("startTime", 0))]
            return 200, [self._trade_json(t) for t in trades]
        if route == ("GET", "/api/v3/account"):
            reply = recorded("binance", "fetchBalance")
            reply["balances"] = [{"asset": a, "free": f, "locked": u} for a, (f, u) in self.balances.items()]
            return 200, reply
        raise AssertionError(f"binance: unexpected request {request}")

    def _new(self, p: dict[str, Any]) -> SimOrder:
        price = D(p["price"]) if "price" in p else None
        side, type_ = p["side"].lower(), p["type"].lower()
        return self._create(p["newClientOrderId"], side, type_, D(p["quantity"]), price)

    def _order(self, order: SimOrder) -> dict[str, Any]:
        reply = recorded("binance", "fetchOrder")
        reply.update({
            "symbol": order.market_id, "orderId": order.id, "clientOrderId": order.cid,
            "price": _n(order.price), "origQty": _n(order.amount), "executedQty": _n(order.filled),
            "cummulativeQuoteQty": _n(order.cost), "status": self._status(order), "type": order.type.upper(),
            "side": order.side.upper(), "time": str(order.created), "updateTime": str(order.updated),
            "workingTime": str(order.created),
        })
        return reply

    def _created(self, order: SimOrder) -> dict[str, Any]:
        reply = recorded("binance", "createOrder")
        reply.update({
            "symbol": order.market_id, "orderId": order.id, "clientOrderId": order.cid,
            "transactTime": str(order.created), "price": _n(order.price), "origQty": _n(order.amount),
            "executedQty": _n(order.filled), "cummulativeQuoteQty": _n(order.cost),
            "status": self._status(order), "type": order.type.upper(), "side": order.side.upper(),
            "workingTime": str(order.created), "icebergQty": _n(D(0)),
        })
        return reply

    def _cancelled(self, order: SimOrder) -> dict[str, Any]:
        reply = recorded("binance", "cancelOrder")
        reply.update({
            "symbol": order.market_id, "origClientOrderId": order.cid, "orderId": order.id,
            "transactTime": str(order.updated), "price": _n(order.price), "origQty": _n(order.amount),
            "executedQty": _n(order.filled), "cummulativeQuoteQty": _n(order.cost),
            "status": self._status(order), "type": order.type.upper(), "side": order.side.upper(),
        })
        return reply

    def _status(self, order: SimOrder) -> str:
        return "PARTIALLY_FILLED" if order.status == "open" and order.filled else self._STATUS[order.status]

    def _trade_json(self, trade: SimTrade) -> dict[str, Any]:
        reply = recorded("binance", "fetchMyTrades")[0]
        reply.update({
            "symbol": trade.order.market_id, "id": trade.id, "orderId": trade.order.id,
            "price": _n(trade.price),
            "qty": _n(trade.amount), "quoteQty": _n(trade.price * trade.amount), "commission": _n(trade.fee),
            "commissionAsset": trade.fee_asset, "time": str(trade.ts), "isBuyer": trade.order.side == "buy",
            "isMaker": trade.maker,
        })
        return reply


class BlofinExchange(SimulatedExchange):
    """Blofin linear perpetuals (/api/v1), BTC/USDT:USDT; amounts in contracts of 0.001 BTC."""

    exchange_id = "blofin"
    market_id = "BTC-USDT"
    contract_size = D("0.001")
    _STATE: ClassVar[dict[str, str]] = {"open": "live", "filled": "filled", "canceled": "canceled"}

    def is_create(self, request: Request) -> bool:
        return request.method == "POST" and request.path == "/api/v1/trade/order"

    def answer(self, request: Request) -> tuple[int, Any]:
        p, route = request.params, (request.method, request.path)
        if route == ("POST", "/api/v1/trade/order"):
            order = self._create(p["clientOrderId"], p["side"], p["orderType"], D(p["size"]),
                                 D(p["price"]) if p.get("price") else None)
            reply = recorded("blofin", "createOrder")
            reply["data"][0].update({"orderId": order.id, "clientOrderId": order.cid})
            return 200, reply
        if route == ("POST", "/api/v1/trade/cancel-order"):
            order = self._find(order_id=p.get("orderId"), cid=p.get("clientOrderId"))
            assert order is not None, f"blofin: no order {p}"
            assert order.status == "open", f"blofin: cannot cancel {p}"
            self._cancel(order)
            reply = recorded("blofin", "cancelOrder")
            reply["data"][0].update({"orderId": order.id, "clientOrderId": order.cid})
            return 200, reply
        if route == ("GET", "/api/v1/trade/orders-pending"):
            return 200, self._orders("fetchOpenOrders", [o for o in self.orders if o.status == "open"])
        if route == ("GET", "/api/v1/trade/orders-history"):
            return 200, self._orders("fetchClosedOrders", [o for o in self.orders if o.status != "open"])
        if route == ("GET", "/api/v1/trade/fills-history"):
            reply = recorded("blofin", "fetchMyTrades")
            template = reply["data"][0]
            reply["data"] = [{
                **template, "instId": t.order.market_id, "tradeId": t.id, "orderId": t.order.id,
                "fillPrice": _n(t.price, 18), "fillSize": _n(t.amount, 18), "side": t.order.side,
                "fee": _n(t.fee, 18), "ts": str(t.ts),
            } for t in self.visible_trades() if t.ts >= int(p.get("begin", 0))]
            return 200, reply
        if route == ("GET", "/api/v1/account/balance"):
            reply = recorded("blofin", "fetchBalance")
            template = reply["data"]["details"][0]
            reply["data"]["details"] = [
                {**template, "currency": a, "equity": _n(D(f) + D(u), 18), "balance": _n(D(f) + D(u), 18),
                 "available": f, "availableEquity": f, "frozen": u, "orderFrozen": u}
                for a, (f, u) in self.balances.items()
            ]
            return 200, reply
        raise AssertionError(f"blofin: unexpected request {request}")

    def _orders(self, method: str, chosen: list[SimOrder]) -> dict[str, Any]:
        reply = recorded("blofin", method)
        template = reply["data"][0]
        reply["data"] = [{
            **template, "orderId": o.id, "clientOrderId": o.cid, "instId": o.market_id, "side": o.side,
            "orderType": o.type, "price": _n(o.price, 18), "size": _n(o.amount, 18),
            "state": "partially_filled" if o.status == "open" and o.filled else self._STATE[o.status],
            "filledSize": _n(o.filled, 18), "averagePrice": _n(o.average, 18), "fee": _n(o.fee, 18),
            "createTime": str(o.created), "updateTime": str(o.updated), "reduceOnly": "false",
        } for o in reversed(chosen)]  # newest first, as Blofin lists them
        return reply


class CryptocomExchange(SimulatedExchange):
    """Crypto.com Exchange v1 (JSON-RPC over POST), BTC/USDT spot."""

    exchange_id = "cryptocom"
    market_id = "BTC_USDT"
    _STATUS: ClassVar[dict[str, str]] = {"open": "ACTIVE", "filled": "FILLED", "canceled": "CANCELED"}

    def is_create(self, request: Request) -> bool:
        return request.name == "private/create-order"

    def answer(self, request: Request) -> tuple[int, Any]:  # noqa: PLR0911 (one return per endpoint)
        p, name = request.params, request.name
        if name == "private/create-order":
            order = self._create(p["client_oid"], p["side"].lower(), p["type"].lower(), D(p["quantity"]),
                                 D(p["price"]) if p.get("price") else None)
            return 200, self._envelope("createOrder", {"client_oid": order.cid, "order_id": order.id})
        if name == "private/amend-order":
            order = self._find(order_id=p.get("order_id"), cid=p.get("orig_client_oid"))
            assert order is not None, f"cryptocom: no order {p}"
            assert order.status == "open", f"cryptocom: cannot amend {p}"
            order.amount, order.price, order.updated = D(p["new_quantity"]), D(p["new_price"]), self.clock
            return 200, self._envelope("editOrder", {"client_oid": order.cid, "order_id": order.id})
        if name == "private/cancel-order":
            order = self._find(order_id=p.get("order_id"), cid=p.get("client_oid"))
            assert order is not None, f"cryptocom: no order {p}"
            assert order.status == "open", f"cryptocom: cannot cancel {p}"
            self._cancel(order)
            return 200, self._envelope("cancelOrder", {"client_oid": order.cid, "order_id": order.id})
        if name == "private/get-order-detail":
            order = self._find(order_id=p.get("order_id"))
            assert order is not None, f"cryptocom: no order {p}"
            return 200, self._envelope("fetchOrder", self._order(order))
        if name == "private/get-open-orders":
            chosen = [self._order(o) for o in self.orders if o.status == "open"]
            return 200, self._envelope("fetchOpenOrders", {"data": chosen})
        if name == "private/get-order-history":
            chosen = [self._order(o) for o in self.orders if o.status != "open"]
            return 200, self._envelope("fetchOrders", {"data": chosen})
        if name == "private/get-trades":
            template = recorded("cryptocom", "fetchMyTrades")["result"]["data"][0]
            since = int(p.get("start_time", 0))
            trades = [{
                **template, "side": t.order.side.upper(), "instrument_name": t.order.market_id,
                "fees": _n(-t.fee), "trade_id": t.id, "create_time": t.ts, "create_time_ns": f"{t.ts}000000",
                "traded_price": _n(t.price), "traded_quantity": _n(t.amount),
                "fee_instrument_name": t.fee_asset, "client_oid": t.order.cid,
                "taker_side": "MAKER" if t.maker else "TAKER", "order_id": t.order.id,
            } for t in self.visible_trades() if t.ts >= since]
            return 200, self._envelope("fetchMyTrades", {"data": trades})
        if name == "private/user-balance":
            reply = recorded("cryptocom", "fetchBalance")
            account = reply["result"]["data"][0]
            template = account["position_balances"][0]
            account["position_balances"] = [
                {**template, "instrument_name": a, "quantity": _n(D(f) + D(u)), "reserved_qty": u,
                 "max_withdrawal_balance": f} for a, (f, u) in self.balances.items()
            ]
            return 200, reply
        raise AssertionError(f"cryptocom: unexpected request {request}")

    def _envelope(self, method: str, result: Any) -> dict[str, Any]:
        reply = recorded("cryptocom", method)
        reply["result"] = result
        return reply

    def _order(self, order: SimOrder) -> dict[str, Any]:
        reply = recorded("cryptocom", "fetchOrder")["result"]
        reply.update({
            "order_id": order.id, "client_oid": order.cid, "order_type": order.type.upper(),
            "side": order.side.upper(), "quantity": _n(order.amount), "limit_price": _n(order.price),
            "order_value": _n(order.amount * (order.price or self.market_price)),
            "avg_price": _n(order.average),
            "cumulative_quantity": _n(order.filled), "cumulative_value": _n(order.cost),
            "cumulative_fee": _n(order.fee), "status": self._STATUS[order.status],
            "instrument_name": order.market_id, "fee_instrument_name": self.fee_asset,
            "create_time": order.created, "create_time_ns": f"{order.created}000000",
            "update_time": order.updated,
        })
        return reply


EXCHANGES: dict[str, type[SimulatedExchange]] = {
    "binance": BinanceExchange, "blofin": BlofinExchange, "cryptocom": CryptocomExchange,
}
