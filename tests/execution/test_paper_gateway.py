"""The paper venue on real bundled BTC/USDT candles: order types, time in force, partial fills,
fees, slippage, no look-ahead, idempotent placement and venue-side rejections."""

from __future__ import annotations

import pickle
from decimal import ROUND_CEILING, Decimal

import pytest
from execution_data import BTC, ETH, D, dec, new_order, real_candles, request
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import DomainError
from execution import paper_gateway
from execution.market import Market
from execution.order import create_order
from execution.paper_gateway import PaperConfig, PaperVenue
from execution.venue import UnknownOrderError, Venue
from tests.factories import candle
from topics.market import CandleClosed
from topics.orders import OrderEvent, OrderFilled, OrderUpdated

CONFIG = PaperConfig()
CANDLES = real_candles("BTC/USDT", start=0, count=96)
C = CANDLES
T0 = C[0].close_time  # decisions are taken on candle 0's close


def venue() -> PaperVenue:
    return PaperVenue("binance", [BTC, ETH], CONFIG, balances={"USDT": D("10000000")})


def run(paper: PaperVenue, candles: list[CandleClosed]) -> list[list[OrderEvent]]:
    """The events each candle caused, candle by candle."""
    return [paper.on_candle(c) for c in candles]


def fills_of(per_candle: list[list[OrderEvent]]) -> list[tuple[int, OrderFilled]]:
    return [(i, e) for i, events in enumerate(per_candle) for e in events if isinstance(e, OrderFilled)]


def updates_of(per_candle: list[list[OrderEvent]]) -> list[tuple[int, OrderUpdated]]:
    return [(i, e) for i, events in enumerate(per_candle) for e in events if isinstance(e, OrderUpdated)]


def taker_price(
    side: str, base: Decimal, quantity: Decimal, c: CandleClosed, limit: Decimal | None = None
) -> Decimal:
    """What the documented slippage model gives (fixed bps + impact x participation)."""
    bps = CONFIG.slippage_bps + CONFIG.impact_bps * quantity / dec(c.volume)
    if side == "buy":
        price = min(BTC.ceil_price(base * (1 + bps / 10_000)), BTC.round_price(dec(c.high)))
        return price if limit is None else min(price, limit)
    price = max(BTC.floor_price(base * (1 - bps / 10_000)), BTC.round_price(dec(c.low)))
    return price if limit is None else max(price, limit)


def fee(price: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    return (price * quantity * rate).quantize(CONFIG.fee_quantum, rounding=ROUND_CEILING)


async def test_the_paper_venue_is_a_venue() -> None:
    assert isinstance(venue(), Venue)


async def test_a_market_order_fills_at_the_next_open_with_slippage_and_a_taker_fee() -> None:
    paper = venue()
    order = new_order(now=T0, quantity=D("0.5"))
    [submitted] = await paper.place(order, now=T0)
    assert isinstance(submitted, OrderUpdated)
    assert submitted.status == "submitted"
    per_candle = run(paper, C[:3])
    assert per_candle[0] == []  # the candle the decision was taken on
    [(i, fill)] = fills_of(per_candle)
    assert i == 1
    open1 = BTC.round_price(dec(C[1].open))
    assert fill.price == taker_price("buy", open1, D("0.5"), C[1])
    assert open1 < fill.price <= BTC.round_price(dec(C[1].high))
    assert (fill.liquidity, fill.quantity, fill.ts_event) == ("taker", D("0.5"), C[1].close_time)
    assert fill.fee == fee(fill.price, D("0.5"), CONFIG.taker_fee_rate)
    assert fill.fee_asset == "USDT"
    balances = await paper.fetch_balances()
    assert balances == {"BTC": D("0.5"), "USDT": D("10000000") - fill.price * D("0.5") - fill.fee}
    assert await paper.fetch_open_orders() == []
    stored = await paper.fetch_order(order.client_order_id)
    assert stored is not None
    assert stored.status == "filled"


@settings(max_examples=25, deadline=None)
@given(start=st.integers(0, 40), offset=st.integers(0, 3_599_999))
async def test_no_order_fills_on_a_candle_that_opened_before_it_was_placed(start: int, offset: int) -> None:
    paper = venue()
    now = C[start].open_time + offset
    await paper.place(new_order(now=now, quantity=D("0.01")), now=now)
    per_candle = run(paper, C[start : start + 3])
    [(i, fill)] = fills_of(per_candle)
    assert i == (0 if offset == 0 else 1)  # placed exactly at an open: that candle is the next one
    assert C[start + i].open_time >= now
    assert fill.ts_event == C[start + i].close_time


async def test_a_resting_limit_buy_fills_at_its_price_as_maker_once_the_market_trades_through() -> None:
    limit = min(BTC.round_price(dec(c.low)) for c in C[1:4])  # touched, but not traded through, by 1..3
    through = next(i for i in range(4, len(C)) if BTC.round_price(dec(C[i].low)) < limit)
    assert BTC.round_price(dec(C[1].open)) > limit
    paper = venue()
    await paper.place(new_order(now=T0, order_type="limit", limit_price=limit, quantity=D("0.2")), now=T0)
    [(i, fill)] = fills_of(run(paper, C))
    assert i == through
    assert (fill.price, fill.liquidity) == (limit, "maker")
    assert fill.fee == fee(limit, D("0.2"), CONFIG.maker_fee_rate)


async def test_a_limit_order_marketable_on_arrival_takes_the_open_but_never_beyond_its_limit() -> None:
    open1 = BTC.round_price(dec(C[1].open))
    paper = venue()
    generous, tight = open1 + 500, open1 + D("0.01")
    await paper.place(new_order(now=T0, order_type="limit", limit_price=generous, quantity=D("1")), now=T0)
    await paper.place(new_order(now=T0, decision_id="dec-2", order_type="limit", limit_price=tight,
                                quantity=D("1")), now=T0)
    [(_, first), (_, second)] = fills_of(run(paper, C[1:2]))
    assert first.price == taker_price("buy", open1, D("1"), C[1], generous)
    assert first.liquidity == "taker"
    assert second.price == tight  # the slippage would have taken it past its limit


async def test_a_stop_buy_triggers_when_the_market_reaches_it_and_fills_from_the_stop() -> None:
    stop = max(BTC.round_price(dec(c.high)) for c in C[1:4]) + D("0.01")
    trigger = next(i for i in range(4, len(C)) if BTC.round_price(dec(C[i].high)) >= stop)
    paper = venue()
    await paper.place(new_order(now=T0, order_type="stop", stop_price=stop, quantity=D("0.3")), now=T0)
    [(i, fill)] = fills_of(run(paper, C))
    assert i == trigger
    base = max(stop, BTC.round_price(dec(C[i].open)))  # the open if it gapped through the stop
    assert fill.price == taker_price("buy", base, D("0.3"), C[i])
    assert stop <= fill.price <= BTC.round_price(dec(C[i].high))


async def test_a_stop_sell_triggers_on_the_way_down() -> None:
    stop = min(BTC.round_price(dec(c.low)) for c in C[1:4]) - D("0.01")
    trigger = next(i for i in range(4, len(C)) if BTC.round_price(dec(C[i].low)) <= stop)
    paper = venue()
    await paper.place(new_order(now=T0, side="sell", order_type="stop", stop_price=stop, quantity=D("0.3")),
                      now=T0)
    [(i, fill)] = fills_of(run(paper, C))
    assert i == trigger
    assert fill.price == taker_price("sell", min(stop, BTC.round_price(dec(C[i].open))), D("0.3"), C[i])


async def test_a_triggered_stop_limit_rests_as_a_limit_from_the_next_candle() -> None:
    stop = max(BTC.round_price(dec(c.high)) for c in C[1:4]) + D("0.01")
    trigger = next(i for i in range(4, len(C)) if BTC.round_price(dec(C[i].high)) >= stop)
    limit = stop * 2  # far above: marketable as soon as it rests
    paper = venue()
    await paper.place(new_order(now=T0, order_type="stop_limit", stop_price=stop, limit_price=limit,
                                quantity=D("0.3")), now=T0)
    [(i, fill)] = fills_of(run(paper, C))
    assert i == trigger + 1
    assert fill.price == taker_price("buy", BTC.round_price(dec(C[i].open)), D("0.3"), C[i], limit)


async def test_ioc_cancels_what_the_first_candle_did_not_fill() -> None:
    available = BTC.floor_quantity(dec(C[1].volume) * CONFIG.max_participation)
    paper = venue()
    far_below = BTC.round_price(dec(C[1].low)) / 2
    await paper.place(new_order(now=T0, order_type="limit", limit_price=BTC.floor_price(far_below),
                                time_in_force="IOC"), now=T0)
    await paper.place(new_order(now=T0, decision_id="dec-2", time_in_force="IOC", quantity=available + 1),
                      now=T0)
    per_candle = run(paper, C[:4])
    [(_, fill)] = fills_of(per_candle)
    assert fill.quantity == available
    cancelled = [u for _, u in updates_of(per_candle) if u.status == "cancelled"]
    left = available + 1 - available
    assert [u.reasons for u in cancelled] == [
        ["IOC: 0.01 unfilled on the first candle"], [f"IOC: {left} unfilled on the first candle"],
    ]
    assert all(u.ts_event == C[1].close_time for u in cancelled)
    assert cancelled[1].filled_quantity == available


async def test_fok_fills_all_on_the_first_candle_or_nothing() -> None:
    available = BTC.floor_quantity(dec(C[1].volume) * CONFIG.max_participation)
    paper = venue()
    await paper.place(new_order(now=T0, time_in_force="FOK", quantity=available + D("0.00001")), now=T0)
    per_candle = run(paper, C[:3])
    assert fills_of(per_candle) == []
    [(_, cancelled)] = [(i, u) for i, u in updates_of(per_candle) if u.status == "cancelled"]
    wanted = available + D("0.00001")
    assert cancelled.reasons == [f"FOK: only {available} of {wanted} could fill on the first candle"]
    paper = venue()
    await paper.place(new_order(now=T0, time_in_force="FOK", quantity=available), now=T0)
    [(i, fill)] = fills_of(run(paper, C[:3]))
    assert (i, fill.quantity, fill.leaves_quantity) == (1, available, D(0))


async def test_a_large_order_fills_in_parts_limited_by_each_candles_volume() -> None:
    caps = [BTC.floor_quantity(dec(c.volume) * CONFIG.max_participation) for c in C]
    quantity = caps[1] + caps[2] + caps[3] // 2
    quantity = BTC.floor_quantity(quantity)
    paper = venue()
    await paper.place(new_order(now=T0, quantity=quantity), now=T0)
    per_candle = run(paper, C[:6])
    fills = fills_of(per_candle)
    assert [i for i, _ in fills] == [1, 2, 3]
    assert [f.quantity for _, f in fills] == [caps[1], caps[2], quantity - caps[1] - caps[2]]
    assert sum(f.quantity for _, f in fills) == quantity
    assert [u.status for _, u in updates_of(per_candle)] == ["partially_filled", "partially_filled", "filled"]
    # taking more of the volume moves the price more: the full-cap fill slipped more than the fixed part
    _, first = fills[0]
    assert first.price == taker_price("buy", BTC.round_price(dec(C[1].open)), caps[1], C[1])


async def test_orders_on_one_candle_share_its_volume_in_the_order_they_were_placed() -> None:
    cap = BTC.floor_quantity(dec(C[1].volume) * CONFIG.max_participation)
    paper = venue()
    await paper.place(new_order(now=T0, decision_id="first", quantity=cap), now=T0)
    await paper.place(new_order(now=T0, decision_id="second", quantity=D("0.1")), now=T0)
    fills = fills_of(run(paper, C[:3]))
    assert [(i, f.quantity) for i, f in fills] == [(1, cap), (2, D("0.1"))]


async def test_a_late_order_caught_up_shares_the_volume_the_orders_on_time_took() -> None:
    cap = BTC.floor_quantity(dec(C[1].volume) * CONFIG.max_participation)
    paper = venue()
    await paper.place(new_order(now=T0, decision_id="on-time", quantity=cap - D("0.01")), now=T0)
    assert run(paper, C[1:3])  # the order on time took all but 0.01 of candle 1's share
    # Decided at T0 too, but placed after candles 1 and 2 went by (a replay faster than the agents):
    await paper.place(new_order(now=T0, decision_id="late", quantity=D("0.05")), now=T0)
    fills = [e for e in paper.catch_up(new_order(now=T0, decision_id="late").client_order_id, C[1:3])
             if isinstance(e, OrderFilled)]
    assert [(f.ts_event, f.quantity) for f in fills] == [(C[1].close_time, D("0.01")),
                                                         (C[2].close_time, D("0.04"))]
    assert pickle.loads(pickle.dumps(paper))._taken == paper._taken  # kept in the agent's saved state


async def test_an_order_expires_at_its_time_instead_of_trading_past_it() -> None:
    paper = venue()
    below = BTC.floor_price(BTC.round_price(dec(C[1].low)) / 2)
    expire_at = C[3].open_time + 1
    order = new_order(now=T0, order_type="limit", limit_price=below, expire_at=expire_at)
    await paper.place(order, now=T0)
    per_candle = run(paper, C[:6])
    [(i, expired)] = updates_of(per_candle)
    assert (i, expired.status, expired.reasons) == (3, "expired", [f"expired at {expire_at}"])
    assert expired.ts_event == C[3].close_time


async def test_cancel_and_modify_an_open_order() -> None:
    paper = venue()
    below = BTC.floor_price(BTC.round_price(dec(C[1].low)) / 2)
    order = new_order(now=T0, order_type="limit", limit_price=below, quantity=D("0.2"))
    await paper.place(order, now=T0)
    run(paper, C[:2])
    open2 = BTC.round_price(dec(C[2].open))
    [amended] = await paper.modify(order.client_order_id, now=C[1].close_time, limit_price=open2 + 100)
    assert amended.reasons == [f"amended: limit_price {below} -> {open2 + 100}"]  # type: ignore[union-attr]
    with pytest.raises(DomainError, match="finer than the tick size"):
        await paper.modify(order.client_order_id, now=C[1].close_time, limit_price=D("1.001"))
    [(_, fill)] = fills_of(run(paper, C[2:3]))
    assert fill.liquidity == "taker"  # an amended order arrives anew: marketable, it takes the open
    assert fill.price < open2 + 100

    other = new_order(now=T0, decision_id="dec-cancel", order_type="limit", limit_price=below)
    await paper.place(other, now=T0)
    [cancelled] = await paper.cancel(other.client_order_id, now=T0 + 5, reason="kill switch")
    assert (cancelled.status, cancelled.reasons) == ("cancelled", ["kill switch"])  # type: ignore[union-attr]
    assert await paper.cancel(other.client_order_id, now=T0 + 6) == []
    assert await paper.fetch_open_orders() == []
    with pytest.raises(UnknownOrderError, match="binance has no order cq-nope"):
        await paper.cancel("cq-nope", now=T0)


async def test_placing_the_same_order_twice_places_it_once() -> None:
    paper = venue()
    order = new_order(now=T0)
    first = await paper.place(order, now=T0)
    again = new_order(now=T0 + 1)  # the same decision, replayed later: the same client order id
    assert again.client_order_id == order.client_order_id
    assert await paper.place(again, now=T0 + 1) == []
    assert await paper.place(order, now=T0) == []
    assert len(first) == 1
    assert len(await paper.fetch_open_orders()) == 1
    assert len(fills_of(run(paper, C[:3]))) == 1


async def test_the_venue_rejects_what_it_does_not_trade() -> None:
    paper = venue()
    elsewhere = Market("binance", "SOL/USDT", D("0.01"), D("0.001"), D("0.001"), D("5"))
    sol = request(decision_id="dec-sol", symbol="SOL/USDT", quantity=D("1"), reference_price=D("100"))
    order, _ = create_order(sol, elsewhere, now=T0)  # valid where it was checked, unknown here
    [rejected] = await paper.place(order, now=T0)
    assert isinstance(rejected, OrderUpdated)
    assert (rejected.status, rejected.reasons) == ("rejected", ["unknown symbol SOL/USDT on binance"])
    kraken = new_order(now=T0, decision_id="dec-k", exchange="kraken")
    [rejected] = await paper.place(kraken, now=T0)
    assert isinstance(rejected, OrderUpdated)
    assert rejected.reasons == ["sent to binance"]
    stored = await paper.fetch_order(kraken.client_order_id)
    assert stored is not None
    with pytest.raises(DomainError, match="is rejected: only a new order can be placed"):
        await venue().place(stored, now=T0)


async def test_the_venue_checks_a_market_orders_notional_at_its_last_price() -> None:
    paper = venue()
    run(paper, C[:1])
    tiny = new_order(now=T0, decision_id="dec-tiny", quantity=D("0.0001"), reference_price=D("60000"))
    [rejected] = await paper.place(tiny, now=T0)  # 6 USDT at the decision's price, under 5 at the market's
    assert isinstance(rejected, OrderUpdated)
    last = BTC.round_price(dec(C[0].close))
    assert rejected.reasons == [f"notional {D('0.0001') * last} is below the minimum 5"]


async def test_candles_of_other_instruments_or_venues_change_nothing() -> None:
    paper = venue()
    await paper.place(new_order(now=T0), now=T0)
    assert paper.on_candle(candle(open_time=C[1].open_time, exchange="kraken")) == []
    assert paper.on_candle(candle(open_time=C[1].open_time, symbol="ETH/USDT")) == []
    assert paper.on_candle(candle(open_time=C[1].open_time, symbol="XRP/USDT")) == []
    assert len(await paper.fetch_open_orders()) == 1


async def test_the_same_stream_gives_byte_identical_events() -> None:
    async def scenario() -> list[bytes]:
        paper = venue()
        cap = BTC.floor_quantity(dec(C[1].volume) * CONFIG.max_participation)
        await paper.place(new_order(now=T0, decision_id="a", quantity=cap * 2), now=T0)
        await paper.place(new_order(now=T0, decision_id="b", side="sell", order_type="limit",
                                    limit_price=BTC.round_price(dec(C[1].high)), quantity=D("0.1")), now=T0)
        return [e.model_dump_json().encode() for events in run(paper, C) for e in events]

    first, second = await scenario(), await scenario()
    assert first == second
    assert len(first) >= 4


async def test_a_long_running_venue_keeps_only_its_newest_ended_orders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its owner pickles it after every order: ended orders beyond CLOSED_ORDERS_KEPT are forgotten
    (oldest first), open ones never, and a pickle from before the bound still loads."""
    monkeypatch.setattr(paper_gateway, "CLOSED_ORDERS_KEPT", 3)
    paper = venue()
    for n in range(5):
        await paper.place(new_order(now=T0, decision_id=f"d{n}"), now=T0)
    resting = new_order(now=T0, decision_id="resting", order_type="limit", limit_price=D("20000"))
    await paper.place(resting, now=T0)
    assert len(fills_of(run(paper, C[1:2]))) == 5
    kept = [n for n in range(5) if await paper.fetch_order(new_order(decision_id=f"d{n}").client_order_id)]
    assert kept == [2, 3, 4]
    assert [o.client_order_id for o in await paper.fetch_open_orders()] == [resting.client_order_id]
    older = pickle.loads(pickle.dumps(paper))
    del older.__dict__["_ended"]  # as pickled before the bound existed
    restored = pickle.loads(pickle.dumps(older))
    assert list(restored._ended) == [new_order(decision_id=f"d{n}").client_order_id for n in (2, 3, 4)]
