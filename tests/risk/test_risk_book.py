"""`execution.risk_book.RiskBook`, the risk inputs the risk agent and the backtest keep alike: the
portfolio at mark, and approved orders counted as held until fills cover them or they end. Checked by
hand (the agent's use is in test_risk_agent_core.py, the backtest's in tests/backtest/test_live_parity.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from config.settings import RiskConfig
from execution.ledger import Ledger
from execution.order import client_order_id
from execution.risk import MarketSnapshot, RiskEngine
from execution.risk_book import RiskBook
from topics.orders import OrderFilled, OrderUpdated
from topics.trading import OrderIntent, PositionSnapshot

D = Decimal
CID = client_order_id("i1")


def book() -> RiskBook:
    ledger = Ledger()
    ledger.deposit("USDT", D("10000"), transfer_id="opening")
    return RiskBook(ledger, quote="USDT", portfolio="paper")


def intent(n: int, **changes: Any) -> OrderIntent:
    values: dict[str, Any] = {"decision_id": f"i{n}", "strategy": "t", "exchange": "binance",
                              "symbol": "BTC/USDT", "side": "buy", "stop_price": D("95"),
                              "take_profit": D("120")}
    return OrderIntent(**(values | changes))


def fill(quantity: str, filled: str, n: int = 1) -> OrderFilled:
    return OrderFilled(trade_id=f"{CID}-{n}", client_order_id=CID, exchange="binance", symbol="BTC/USDT",
                       side="buy", price=D("100"), quantity=D(quantity), fee=D("0"), fee_asset="USDT",
                       liquidity="taker", filled_quantity=D(filled), leaves_quantity=D("20") - D(filled),
                       ts_event=n)


def update(status: str, quantity: str) -> OrderUpdated:
    return OrderUpdated(client_order_id=CID, decision_id="i1", exchange="binance", symbol="BTC/USDT",
                        side="buy", order_type="market", time_in_force="GTC", quantity=D(quantity),
                        status=status, filled_quantity=D("0"), filled_notional=D("0"), seq=1, ts_event=1)


def decide(risk: RiskBook, n: int = 1, **changes: Any) -> Any:
    engine = RiskEngine(RiskConfig())
    return risk.decide(engine, intent(n, **changes), risk.portfolio(0), MarketSnapshot(price=D("100")))


def test_an_approved_order_counts_as_held_until_its_fills_cover_it() -> None:
    risk = book()
    approved = decide(risk)
    assert (approved.verdict, approved.size) == ("approved", D("20"))  # 1 % of 10,000 over a stop 5 away
    assert risk.pending_orders() == [PositionSnapshot(exchange="binance", symbol="BTC/USDT", quantity=D("20"),
                                                      mark_price=D("100"))]
    risk.filled(fill("5", "5"))
    assert [p.quantity for p in risk.pending_orders()] == [D("15")]
    risk.filled(fill("15", "20", n=2))
    assert risk.pending == {}


def test_a_trimmed_order_counts_at_its_new_size_and_one_that_ends_unfilled_leaves() -> None:
    risk = book()
    decide(risk)
    risk.order_changed(update("submitted", "12"))
    assert [p.quantity for p in risk.pending_orders()] == [D("12")]
    risk.order_changed(update("filled", "12"))  # its fills come on their own and move the ledger
    assert CID in risk.pending
    risk.order_changed(update("cancelled", "12"))
    assert risk.pending == {}


def test_a_reduce_only_approval_is_not_pending_and_the_portfolio_is_at_mark_or_at_cost() -> None:
    risk = book()
    risk.ledger.apply(fill("2", "2"))
    risk.exchanges["BTC/USDT"] = "binance"
    (position,) = risk.portfolio(7).positions
    assert (position.mark_price, position.exchange) == (D("100"), "binance")  # at cost: no mark yet
    risk.ledger.mark("BTC/USDT", D("110"))
    snapshot = risk.portfolio(8)
    assert (snapshot.portfolio, snapshot.ts, snapshot.equity) == ("paper", 8, D("10020"))
    reduce = decide(risk, 2, side="sell", reduce_only=True, size=D("1"), stop_price=None, take_profit=None)
    assert (reduce.verdict, reduce.sizing) == ("approved", "reduce_only")
    assert risk.pending == {}
