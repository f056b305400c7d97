"""What the risk engine decides against besides the intent: the portfolio at mark and the orders it
approved that have not filled yet.

The risk agent (`agents.risk.RiskCore`) and the backtest (`backtest.engine.Book`) keep these with
one `RiskBook`, so the same fills and order changes give the same decisions:

- the portfolio: equity and the open positions of a `Ledger` at its marks (at cost before an
  instrument's first mark), each on the exchange its fills came from (`exchanges`);
- `pending`: an order risk approved (not a reduce-only one) counts against the exposure and
  position limits at its approval price until fills cover it or it ends unfilled; an order
  execution trimmed counts at its new size. So intents repeated faster than fills come back
  cannot stack past a limit;
- `decide`: the engine evaluates the intent at the market (the last close and ATR(`ATR_PERIOD`)
  of the instrument's candles, which each caller streams its own way) with the pending orders,
  and the approval joins `pending`.

Who books fills into the ledger is the caller's: the risk agent books the fills it reads, the
backtest reads the paper venue's own ledger. `pending` is the risk agent's saved state as it is
(strings), so a restart keeps it.
"""

from __future__ import annotations

from decimal import Decimal

from execution.ledger import Ledger
from execution.order import TERMINAL, client_order_id
from execution.risk import MarketSnapshot, RiskEngine
from topics.orders import OrderFilled, OrderUpdated
from topics.trading import OrderIntent, PortfolioSnapshot, PositionSnapshot, RiskDecision

ATR_PERIOD = 14  # the ATR the risk engine's stops, targets and trailing distances are measured in


class RiskBook:
    """A portfolio's risk inputs: the ledger valued at mark, and the approved orders not filled yet."""

    def __init__(
        self, ledger: Ledger, *, quote: str, portfolio: str, pending: dict[str, dict[str, str]] | None = None
    ) -> None:
        self.ledger = ledger
        self.quote = quote
        self.name = portfolio
        self.exchanges: dict[str, str] = {}  # symbol -> the exchange of its fills
        # client order id -> the approved order not yet filled: exchange, symbol, signed quantity,
        # price, filled
        self.pending: dict[str, dict[str, str]] = pending if pending is not None else {}

    def portfolio(self, ts: int) -> PortfolioSnapshot:
        """Equity and open positions at mark (at cost before an instrument's first close)."""
        positions = []
        for symbol, position in sorted(self.ledger.positions.items()):
            if position.quantity == 0:
                continue
            mark = self.ledger.marks.get(symbol) or abs(position.cost / position.quantity)
            positions.append(PositionSnapshot(exchange=self.exchanges[symbol], symbol=symbol,
                                              quantity=position.quantity, mark_price=mark))
        equity = self.ledger.equity(self.quote)
        return PortfolioSnapshot(portfolio=self.name, ts=ts, equity=equity, positions=tuple(positions))

    def pending_orders(self) -> list[PositionSnapshot]:
        """The approved orders not yet filled, as signed unfilled quantities at their approval price."""
        out = []
        for order in self.pending.values():
            quantity = Decimal(order["quantity"])
            sign = 1 if quantity > 0 else -1
            left = quantity - sign * Decimal(order["filled"])
            if left != 0:
                out.append(PositionSnapshot(exchange=order["exchange"], symbol=order["symbol"], quantity=left,
                                            mark_price=Decimal(order["price"])))
        return out

    def decide(
        self, engine: RiskEngine, intent: OrderIntent, portfolio: PortfolioSnapshot, market: MarketSnapshot
    ) -> RiskDecision:
        """The engine's decision on `intent`; an approved order to open or add counts as pending."""
        decision = engine.evaluate(intent, portfolio, market, pending=self.pending_orders())
        if decision.verdict != "rejected" and decision.sizing != "reduce_only":
            sign = 1 if decision.side == "buy" else -1
            self.pending[client_order_id(decision.decision_id)] = {
                "exchange": decision.exchange, "symbol": decision.symbol,
                "quantity": str(sign * decision.size), "price": str(decision.entry_price or market.price),
                "filled": "0",
            }
        return decision

    def filled(self, fill: OrderFilled) -> None:
        """A fill (booked once): an approved order leaves `pending` when filled in full."""
        order = self.pending.get(fill.client_order_id)
        if order is None:
            return  # not ours to track (an exit, or an order that already ended)
        filled = Decimal(order["filled"]) + fill.quantity
        if filled >= abs(Decimal(order["quantity"])):
            del self.pending[fill.client_order_id]
        else:
            order["filled"] = str(filled)

    def order_changed(self, update: OrderUpdated) -> None:
        """An order that ended unfilled leaves `pending`; one execution trimmed counts at its new size."""
        order = self.pending.get(update.client_order_id)
        if order is None:
            return
        if update.status in TERMINAL and update.status != "filled":
            del self.pending[update.client_order_id]  # cancelled, rejected or expired: no more fills
        elif update.quantity.is_finite() and update.quantity > 0:
            sign = 1 if update.side == "buy" else -1
            order["quantity"] = str(sign * update.quantity)  # execution may have trimmed it
            # A `filled` status waits for its fills, which move the ledger.
