"""The ccxt venue on real ccxt exchange objects (Binance, Blofin, Crypto.com) whose HTTP layer
answers from recorded exchange responses (see ccxt_replay.py and fixtures/ccxt/PROVENANCE.md).

ccxt builds, signs and parses every request; the venue code runs unchanged; only the network is
a simulated exchange account. A "restart" is a new ccxt object and a new venue over the same
account, with nothing carried over but what the caller persisted.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from ccxt_replay import EXCHANGES, SimulatedExchange
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from config.errors import ConfigError, DomainError, RetriableError
from config.settings import ExchangeConfig, Settings
from execution.ccxt_venue import CcxtVenue, market_from_ccxt
from execution.ledger import entry_record
from execution.order import Order, OrderRequest, create_order
from execution.venue import UnknownOrderError, Venue
from memory.ledger import LedgerRecord, LedgerStore
from memory.orders import OrderStore
from topics.orders import OrderEvent, OrderFilled, OrderUpdated

D = Decimal
NOW = 1_767_225_000_000
IDS = ("binance", "blofin", "cryptocom")
SYMBOL = {"binance": "BTC/USDT", "blofin": "BTC/USDT:USDT", "cryptocom": "BTC/USDT"}
TICK = {"binance": D("0.01"), "blofin": D("0.1"), "cryptocom": D("0.01")}
CONTRACTS = {"binance": D(1), "blofin": D("0.001"), "cryptocom": D(1)}  # base units per exchange amount


def account(exchange_id: str) -> SimulatedExchange:
    return EXCHANGES[exchange_id](balances={"USDT": ("1000", "86"), "BTC": ("0.5", "0")})


def order(exchange_id: str, decision_id: str = "dec-1", **changes: Any) -> Order:
    """A valid `new` limit buy of 0.002 BTC at 43000 (checked against the venue's own rules)."""
    values: dict[str, Any] = {
        "decision_id": decision_id, "exchange": exchange_id, "symbol": SYMBOL[exchange_id], "side": "buy",
        "order_type": "limit", "quantity": D("0.002"), "limit_price": D("43000"),
    }
    values.update(changes)
    venue = CcxtVenue(account(exchange_id).client())
    new, events = create_order(OrderRequest(**values), venue.market(values["symbol"]), now=NOW)
    assert new.status == "new", events
    return new


def plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def statuses(events: list[OrderEvent]) -> list[str]:
    """Each event in short: an order's status, or `fill <quantity>@<price>`."""
    return [
        e.status if isinstance(e, OrderUpdated) else f"fill {plain(e.quantity)}@{plain(e.price)}"
        for e in events
    ]


def client_id_sent(exchange: SimulatedExchange) -> str:
    params = exchange.creates()[-1].params
    return str(params.get("newClientOrderId") or params.get("clientOrderId") or params.get("client_oid"))


# ---------------------------------------------------------------------------- markets and keys


@pytest.mark.parametrize(("exchange_id", "step", "minimum", "min_notional"), [
    ("binance", D("0.00001"), D("0.00001"), D(5)),
    ("blofin", D("0.001"), D("0.001"), D(0)),  # 1 contract of 0.001 BTC, in BTC
    ("cryptocom", D("0.00001"), D("0.00001"), D(0)),  # no minimum listed: one step
])
def test_market_rules_come_from_the_exchanges_markets(
    exchange_id: str, step: Decimal, minimum: Decimal, min_notional: Decimal
) -> None:
    venue = CcxtVenue(account(exchange_id).client())
    market = venue.market(SYMBOL[exchange_id])
    assert market is not None
    assert (market.tick_size, market.step_size, market.min_quantity, market.min_notional) == (
        TICK[exchange_id], step, minimum, min_notional
    )
    assert venue.market("NOPE/USDT") is None
    assert isinstance(venue, Venue)


@pytest.mark.parametrize("market", [
    {"symbol": "BTC/USDT", "precision": {"price": None, "amount": 0.1}},
    {"symbol": "BTC/USDT", "precision": {"price": 0.01, "amount": 0}},
    {"symbol": "BTCUSDT", "precision": {"price": 0.01, "amount": 0.1}},
    {"symbol": "BTC/USDT", "precision": {"price": 0.01, "amount": 0.1}, "limits": {"amount": {"min": -1}}},
])
def test_a_market_whose_rules_are_unusable_has_none(market: dict[str, Any]) -> None:
    assert market_from_ccxt("x", market) is None  # orders on it are rejected as unknown, never guessed


def test_keys_come_from_the_config_secrets() -> None:
    settings = Settings(exchanges={"binance": ExchangeConfig(
        api_key=SecretStr("key-1"), secret=SecretStr("secret-1"), sandbox=True
    )})
    venue = CcxtVenue.from_settings(settings, "binance")
    assert (venue.exchange, venue.client.apiKey, venue.client.secret) == ("binance", "key-1", "secret-1")
    assert venue.client.isSandboxModeEnabled
    assert "key-1" not in repr(settings)


@pytest.mark.parametrize(("exchange_id", "config", "message"), [
    ("binance", ExchangeConfig(secret=SecretStr("s")), "exchanges.binance.api_key is not set"),
    ("cryptocom", ExchangeConfig(api_key=SecretStr("k")), "exchanges.cryptocom.secret is not set"),
    ("blofin", ExchangeConfig(api_key=SecretStr("k"), secret=SecretStr("s")),
     "exchanges.blofin.password is not set"),  # Blofin's API passphrase
    ("kraken", None, "exchanges.kraken is not configured"),
    ("nosuchexchange", None, "'nosuchexchange' is not a ccxt exchange id"),
])
def test_a_missing_key_is_named(exchange_id: str, config: ExchangeConfig | None, message: str) -> None:
    settings = Settings(exchanges={exchange_id: config} if config else {})
    with pytest.raises(ConfigError, match=message):
        CcxtVenue.from_settings(settings, exchange_id)


# ---------------------------------------------------------------------------- place, fill, cancel


@pytest.mark.parametrize("exchange_id", IDS)
async def test_a_limit_order_is_sent_with_our_client_order_id(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    events = await venue.place(new, now=NOW)
    resting = exchange.order(new.client_order_id)
    assert statuses(events) == ["submitted"]
    assert events[0].venue_order_id == resting.id
    assert client_id_sent(exchange) == new.client_order_id
    assert resting.amount * CONTRACTS[exchange_id] == D("0.002")
    assert (resting.price, resting.status) == (D(43000), "open")
    assert await venue.place(new, now=NOW + 1) == []  # the same order again: nothing
    assert len(exchange.creates()) == 1


@pytest.mark.parametrize("exchange_id", IDS)
async def test_a_market_order_fills_at_once(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id, order_type="market", limit_price=None)
    events = await venue.place(new, now=NOW)
    fill = events[-1]
    assert statuses(events) == ["submitted", "filled", "fill 0.002@43500"]
    assert isinstance(fill, OrderFilled)
    trade = exchange.trades[0]
    assert (fill.trade_id, fill.liquidity, fill.fee, fill.fee_asset) == (
        f"{exchange_id}:{trade.id}", "taker", D("0.087"), "USDT"
    )
    assert fill.ts_event == trade.ts  # the exchange's time of the trade


@pytest.mark.parametrize("exchange_id", IDS)
async def test_partial_fills_become_order_filled_events_once_each(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    await venue.place(new, now=NOW)
    half = str(D("0.001") / CONTRACTS[exchange_id])
    exchange.fill(new.client_order_id, half, "43000", fee="0.043")
    first = await venue.poll(now=NOW + 10)
    assert statuses(first) == ["partially_filled", "fill 0.001@43000"]
    fill = first[1]
    assert isinstance(fill, OrderFilled)
    assert (fill.filled_quantity, fill.leaves_quantity, fill.fee, fill.liquidity) == (
        D("0.001"), D("0.001"), D("0.043"), "maker" if exchange_id != "blofin" else "taker"
    )  # Blofin's fills do not say which side of the book they took: counted as taker (higher fee tier)
    assert await venue.poll(now=NOW + 20) == []  # nothing new: nothing reported twice
    exchange.fill(new.client_order_id, half, "42999", fee="0.043")
    second = await venue.poll(now=NOW + 30)
    assert statuses(second) == ["filled", "fill 0.001@42999"]
    assert await venue.poll(now=NOW + 40) == []
    done = await venue.fetch_order(new.client_order_id)
    assert done is not None
    assert (done.status, done.filled_quantity, done.average_price(2)) == ("filled", D("0.002"), D("42999.50"))


@pytest.mark.parametrize("exchange_id", IDS)
async def test_an_order_filled_without_listed_trades_gets_one_fill_for_the_rest(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    await venue.place(new, now=NOW)
    one = str(D("0.001") / CONTRACTS[exchange_id])
    exchange.fill(new.client_order_id, one, "43000", fee="0.04")
    await venue.poll(now=NOW + 10)
    exchange.fill(new.client_order_id, one, "42990", fee="0.04")
    exchange.hide_trades = True  # the exchange reports the order filled but lists no trade for it
    events = await venue.poll(now=NOW + 20)
    assert statuses(events) == ["filled", "fill 0.001@42990"]  # keeps the exchange's average, 42995
    fill = events[1]
    assert isinstance(fill, OrderFilled)
    # the rest is charged the order's fee (0.08) less the fee already booked (0.04); Binance's
    # order reply has no fee, so nothing more is charged there
    rest_fee = D(0) if exchange_id == "binance" else D("0.04")
    assert (fill.trade_id, fill.fee) == (f"{new.client_order_id}-3", rest_fee)


@pytest.mark.parametrize("exchange_id", IDS)
async def test_cancel_keeps_the_fills_that_came_before_it(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    await venue.place(new, now=NOW)
    exchange.fill(new.client_order_id, str(D("0.001") / CONTRACTS[exchange_id]), "43000")
    events = await venue.cancel(new.client_order_id, now=NOW + 10, reason="strategy exit")
    assert statuses(events) == ["partially_filled", "fill 0.001@43000", "cancelled"]
    assert events[-1].reasons == ["strategy exit"]
    assert exchange.order(new.client_order_id).status == "canceled"
    assert await venue.cancel(new.client_order_id, now=NOW + 20) == []  # already cancelled
    assert await venue.fetch_open_orders() == []
    with pytest.raises(UnknownOrderError):
        await venue.cancel("cq-never-placed", now=NOW)


async def test_a_cancel_the_exchange_carries_out_later_comes_with_a_later_poll() -> None:
    exchange = account("cryptocom")  # Crypto.com's cancel-order is asynchronous
    venue = CcxtVenue(exchange.client())
    new = order("cryptocom")
    await venue.place(new, now=NOW)
    exchange.cancels_later = True
    assert await venue.cancel(new.client_order_id, now=NOW + 10, reason="kill switch") == []
    exchange.settle_cancels()
    events = await venue.poll(now=NOW + 20)
    assert statuses(events) == ["cancelled"]
    assert events[0].reasons == ["kill switch"]


async def test_a_cancel_that_arrives_after_the_last_fill_reports_the_fill() -> None:
    exchange = account("binance")
    venue = CcxtVenue(exchange.client())
    new = order("binance")
    await venue.place(new, now=NOW)
    exchange.fill(new.client_order_id, "0.002", "43000")  # filled before the cancel reaches Binance
    events = await venue.cancel(new.client_order_id, now=NOW + 10)
    assert statuses(events) == ["filled", "fill 0.002@43000"]  # Binance said -2013: not cancelled


# ---------------------------------------------------------------------------- modify


@pytest.mark.parametrize(("exchange_id", "same_venue_order"), [
    ("binance", False),  # cancelReplace: a new order with our client id
    ("blofin", False),  # no amend: cancel, then place again with our client id
    ("cryptocom", True),  # amend-order in place
])
async def test_modify_changes_price_and_size(exchange_id: str, same_venue_order: bool) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    placed = (await venue.place(new, now=NOW))[-1]
    price = D("42000") + TICK[exchange_id]
    events = await venue.modify(new.client_order_id, now=NOW + 10, quantity=D("0.003"), limit_price=price)
    assert statuses(events) == ["submitted"]
    assert events[0].reasons == [f"amended: quantity 0.002 -> 0.003, limit_price 43000 -> {price}"]
    live = exchange.order(new.client_order_id)
    assert (live.amount * CONTRACTS[exchange_id], live.price, live.status) == (D("0.003"), price, "open")
    assert (events[0].venue_order_id == placed.venue_order_id) is same_venue_order
    assert events[0].venue_order_id == live.id
    assert [o.cid for o in exchange.orders] == [new.client_order_id] * (1 if same_venue_order else 2)
    exchange.fill(new.client_order_id, str(D("0.003") / CONTRACTS[exchange_id]), str(price))
    assert statuses(await venue.poll(now=NOW + 20)) == ["filled", f"fill 0.003@{price}"]


@pytest.mark.parametrize("exchange_id", ["binance", "blofin"])
async def test_an_order_that_would_be_replaced_is_not_modified_after_a_fill(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    await venue.place(new, now=NOW)
    exchange.fill(new.client_order_id, str(D("0.001") / CONTRACTS[exchange_id]), "43000")
    await venue.poll(now=NOW + 5)
    with pytest.raises(DomainError, match="cancel it and decide again"):
        await venue.modify(new.client_order_id, now=NOW + 10, limit_price=D("42000"))
    assert len(exchange.creates()) == 1


@pytest.mark.parametrize("exchange_id", ["binance", "blofin"])
async def test_an_order_that_traded_unseen_is_not_replaced_and_its_fill_is_not_lost(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    await venue.place(new, now=NOW)
    exchange.fill(new.client_order_id, str(D("0.001") / CONTRACTS[exchange_id]), "43000")  # not polled yet
    with pytest.raises(DomainError, match="traded or ended before it could be amended"):
        await venue.modify(new.client_order_id, now=NOW + 10, limit_price=D("42000"))
    assert len(exchange.creates()) == 1
    assert exchange.order(new.client_order_id).price == D(43000)
    assert statuses(await venue.poll(now=NOW + 20)) == ["partially_filled", "fill 0.001@43000"]


async def test_a_blofin_order_that_trades_while_being_replaced_stays_cancelled_with_its_fill() -> None:
    exchange = account("blofin")
    venue = CcxtVenue(exchange.client())
    new = order("blofin")
    await venue.place(new, now=NOW)
    exchange.before_next_cancel = lambda: exchange.fill(new.client_order_id, "1", "43000")
    events = await venue.modify(new.client_order_id, now=NOW + 10, limit_price=D("42000"))
    assert statuses(events) == ["partially_filled", "fill 0.001@43000", "cancelled"]
    assert events[-1].reasons == ["cancelled to be amended, but it traded meanwhile: not replaced"]
    assert len(exchange.creates()) == 1


async def test_crypto_com_amends_a_partly_filled_order_in_place() -> None:
    exchange = account("cryptocom")
    venue = CcxtVenue(exchange.client())
    new = order("cryptocom")
    await venue.place(new, now=NOW)
    exchange.fill(new.client_order_id, "0.001", "43000")
    await venue.poll(now=NOW + 5)
    events = await venue.modify(new.client_order_id, now=NOW + 10, limit_price=D("43100"))
    assert statuses(events) == ["partially_filled"]
    assert exchange.order(new.client_order_id).price == D("43100")


async def test_a_modification_the_rules_refuse_sends_nothing() -> None:
    exchange = account("binance")
    venue = CcxtVenue(exchange.client())
    new = order("binance")
    await venue.place(new, now=NOW)
    before = len(exchange.requests)
    with pytest.raises(DomainError, match="finer than the tick size"):
        await venue.modify(new.client_order_id, now=NOW + 10, limit_price=D("43000.001"))
    assert len(exchange.requests) == before


# ---------------------------------------------------------------------------- reads


@pytest.mark.parametrize("exchange_id", IDS)
async def test_open_orders_and_balances_are_read_from_the_exchange(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    first = order(exchange_id, "dec-a")
    second = order(exchange_id, "dec-b", side="sell", limit_price=D(44000))
    await venue.place(first, now=NOW)
    await venue.place(second, now=NOW + 1)
    await venue.cancel(first.client_order_id, now=NOW + 2)
    open_orders = await venue.fetch_open_orders(SYMBOL[exchange_id])
    assert [(o.client_order_id, o.decision_id, o.side, o.quantity, o.status) for o in open_orders] == [
        (second.client_order_id, "dec-b", "sell", D("0.002"), "submitted")
    ]
    assert await venue.fetch_balances() == {"BTC": D("0.5"), "USDT": D("1086")}
    assert await venue.fetch_order("cq-never-placed") is None


# ---------------------------------------------------------------------------- bad orders


def raw_order(exchange_id: str, **changes: Any) -> Order:
    """A `new` order as a caller might hand it over, never checked against the venue's rules."""
    return replace(order(exchange_id), **changes)


BAD = [
    ({"quantity": D(0)}, "quantity must be positive, got 0"),
    ({"quantity": D("-0.002")}, "quantity must be positive, got -0.002"),
    ({"limit_price": D("NaN")}, "limit_price must be a finite number, got NaN"),
    ({"limit_price": D("Infinity")}, "limit_price must be a finite number, got Infinity"),
    ({"symbol": "DOGE/USDT"}, "unknown symbol DOGE/USDT on {x}"),
    ({"quantity": D("0.000001")}, "quantity 0.000001 is below the minimum {min}"),
    ({"quantity": D("0.0020001")}, "quantity 0.0020001 is finer than the step size {step}"),
    ({"limit_price": D("43000.001")}, "limit_price 43000.001 is finer than the tick size {tick}"),
    ({"order_type": "stop", "limit_price": None, "stop_price": D(45000)},
     "stop orders are not supported on {x} yet"),
    ({"exchange": "kraken"}, "sent to {x}"),
]


BAD_IDS = ["zero", "negative", "nan-price", "inf-price", "unknown-symbol", "below-minimum", "step",
           "tick", "stop-order", "other-exchange"]


@pytest.mark.parametrize("exchange_id", IDS)
@pytest.mark.parametrize(("changes", "reason"), BAD, ids=BAD_IDS)
async def test_a_bad_order_is_rejected_with_its_reason_and_nothing_is_sent(
    exchange_id: str, changes: dict[str, Any], reason: str
) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    market = venue.market(SYMBOL[exchange_id])
    assert market is not None
    bad = raw_order(exchange_id, **changes)
    events = await venue.place(bad, now=NOW)
    expected = reason.format(
        x=exchange_id, min=market.min_quantity, step=market.step_size, tick=market.tick_size
    )
    assert statuses(events) == ["rejected"]
    assert expected in events[0].reasons
    assert exchange.requests == []  # nothing reached the exchange
    kept = events[0]  # nothing lost: the rejection carries the order as it was asked for
    assert isinstance(kept, OrderUpdated)
    assert (kept.symbol, str(kept.quantity), str(kept.limit_price)) == (
        bad.symbol, str(bad.quantity), str(bad.limit_price)
    )
    assert await venue.fetch_order(bad.client_order_id) == Order.from_event(kept)


async def test_a_notional_below_the_minimum_is_rejected() -> None:
    exchange = account("binance")
    venue = CcxtVenue(exchange.client())
    events = await venue.place(raw_order("binance", quantity=D("0.0001"), limit_price=D("40000")), now=NOW)
    assert events[0].reasons == ["notional 4.0000 is below the minimum 5"]
    assert exchange.requests == []


async def test_an_order_the_exchange_refuses_is_rejected_with_the_exchanges_reason() -> None:
    exchange = account("binance")
    venue = CcxtVenue(exchange.client())
    exchange.refuse_next_create = "errorInsufficientBalance"
    events = await venue.place(order("binance"), now=NOW)
    assert statuses(events) == ["rejected"]
    assert "binance refused the order" in events[0].reasons[0]
    assert "insufficient balance" in events[0].reasons[0]


async def test_refused_credentials_are_a_config_error_naming_the_keys() -> None:
    exchange = account("binance")
    venue = CcxtVenue(exchange.client())
    exchange.fail_next = "errorInvalidKey"
    with pytest.raises(ConfigError, match=r"check exchanges\.binance\.api_key, secret and password"):
        await venue.fetch_balances()
    exchange.fail_next = "errorInvalidKey"  # while placing: the order is not rejected, nothing is lost
    new = order("binance")
    with pytest.raises(ConfigError):
        await venue.place(new, now=NOW)
    assert statuses(await venue.place(new, now=NOW + 1)) == ["submitted"]


# ---------------------------------------------------------------------------- restarts and faults


@pytest.mark.parametrize("exchange_id", IDS)
async def test_a_restarted_agent_finds_the_order_it_sent_and_sends_nothing(exchange_id: str) -> None:
    """Killed after sending, before committing anything: the new life handles the decision again."""
    exchange = account(exchange_id)
    new = order(exchange_id)
    await CcxtVenue(exchange.client()).place(new, now=NOW)  # the first life; its events are lost
    exchange.fill(new.client_order_id, str(D("0.001") / CONTRACTS[exchange_id]), "43000")  # while down
    again = CcxtVenue(exchange.client())  # the second life: a new ccxt object, nothing remembered
    events = await again.place(new, now=NOW + 100)
    assert len(exchange.creates()) == 1
    assert statuses(events) == ["submitted", "partially_filled", "fill 0.001@43000"]
    assert events[0].venue_order_id == exchange.order(new.client_order_id).id
    assert [e.seq for e in events if isinstance(e, OrderUpdated)] == [1, 2]  # continues the caller's order


@pytest.mark.parametrize("exchange_id", IDS)
async def test_a_lost_reply_is_retriable_and_the_retry_sends_nothing(exchange_id: str) -> None:
    exchange = account(exchange_id)
    venue = CcxtVenue(exchange.client())
    new = order(exchange_id)
    exchange.lose_next_create_reply = True  # the exchange takes the order, its answer never arrives
    with pytest.raises(RetriableError, match="RequestTimeout"):
        await venue.place(new, now=NOW)
    assert len(exchange.creates()) == 1
    assert exchange.order(new.client_order_id).status == "open"
    events = await venue.place(new, now=NOW + 5)  # the runtime retries the decision
    assert statuses(events) == ["submitted"]
    assert len(exchange.creates()) == 1


@pytest.mark.parametrize("exchange_id", IDS)
async def test_reconcile_on_start_up(exchange_id: str) -> None:
    exchange = account(exchange_id)
    first_life = CcxtVenue(exchange.client())
    resting = order(exchange_id, "dec-r", quantity=D("0.003"))
    sent, unsent = order(exchange_id, "dec-s"), order(exchange_id, "dec-u")
    half = str(D("0.001") / CONTRACTS[exchange_id])
    stored: list[OrderEvent] = [resting.event(None)]
    stored += await first_life.place(resting, now=NOW)
    exchange.fill(resting.client_order_id, half, "42900", fee="0.01")
    stored += await first_life.poll(now=NOW + 1)  # its first fill was seen and stored
    stored += [sent.event(None), unsent.event(None)]  # created and stored ...
    await first_life.place(sent, now=NOW + 2)  # ... then `sent` went out and the agent died
    exchange.fill(resting.client_order_id, half, "43000", fee="0.01")  # while it was down
    exchange.fill(sent.client_order_id, half, "42990", fee="0.01")
    hand = exchange.place_by_hand("by-hand-1", "sell", "1" if exchange_id == "blofin" else "0.001", "50000")
    latest = {e.client_order_id: e for e in stored if isinstance(e, OrderUpdated)}

    second_life = CcxtVenue(exchange.client())
    result = await second_life.reconcile(latest.values(), now=NOW + 1000)

    by_order: dict[str, list[str]] = {}
    for event in result.events:
        by_order.setdefault(event.client_order_id, []).append(statuses([event])[0])
    assert by_order == {
        resting.client_order_id: ["partially_filled", "fill 0.001@43000"],
        sent.client_order_id: ["submitted", "partially_filled", "fill 0.001@42990"],
    }
    assert [f.client_order_id for f in result.fills] == [resting.client_order_id, sent.client_order_id]
    assert result.missing == [unsent.client_order_id]
    foreign = [(o.client_order_id, o.venue_order_id, o.side) for o in result.foreign]
    assert foreign == [("by-hand-1", hand.id, "sell")]
    assert result.balances == {"BTC": D("0.5"), "USDT": D("1086")}
    assert len(exchange.creates()) == 2  # reconciling sends nothing
    # the missing order can be placed now; reconciling again finds nothing new
    assert statuses(await second_life.place(unsent, now=NOW + 2000)) == ["submitted"]
    again = await second_life.reconcile(latest.values(), now=NOW + 3000)
    assert again.events == []
    assert again.missing == []


async def test_reconciled_events_persist_idempotently(engine: AsyncEngine) -> None:
    """What the execution agent does with a reconciliation: orders and fills to the order store,
    fills to the ledger; a second start-up stores nothing twice."""
    exchange = account("binance")
    new = order("binance", "dec-persist")
    await CcxtVenue(exchange.client()).place(new, now=NOW)
    exchange.fill(new.client_order_id, "0.002", "43000", fee="0.05")
    orders_store, ledger_store = OrderStore(engine), LedgerStore(engine)
    await orders_store.record([new.event(None)])
    for life in range(2):
        known = await orders_store.open_orders("binance")
        result = await CcxtVenue(exchange.client()).reconcile(known, now=NOW + 10)
        await orders_store.record(result.events)
        await ledger_store.append("ccxt:binance", [LedgerRecord(**entry_record(f)) for f in result.fills])
        if life == 0:
            assert statuses(result.events) == ["submitted", "filled", "fill 0.002@43000"]
        else:
            assert result.events == []  # nothing open any more
    stored = await orders_store.get(new.client_order_id)
    assert stored is not None
    assert (stored.status, stored.filled_quantity) == ("filled", D("0.002"))
    fills = await orders_store.fills(new.client_order_id)
    assert [(f.price, f.quantity, f.fee) for f in fills] == [(D(43000), D("0.002"), D("0.05"))]
    assert [e.kind for e in await ledger_store.entries("ccxt:binance")] == ["fill"]
