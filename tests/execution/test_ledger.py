"""The ledger conserves value exactly, books realised P/L right, and replays to the same books."""

from __future__ import annotations

import contextlib
import pickle
from decimal import Context, Decimal, Inexact, localcontext

import orjson
import pytest
from execution_data import D
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import DomainError
from execution.ledger import Ledger, Position, Transfer, entry_from_record, entry_record
from topics.orders import OrderFilled, split_symbol

ZERO = D(0)


def filled(symbol: str, side: str, quantity: str | Decimal, price: str | Decimal, *, fee: str | Decimal = "0",
           fee_asset: str | None = None, n: int = 1) -> OrderFilled:
    return OrderFilled(
        trade_id=f"t-{n}", client_order_id="cq-test", exchange="paper", symbol=symbol, side=side,  # type: ignore[arg-type]
        price=D(price), quantity=D(quantity), fee=D(fee), fee_asset=fee_asset or split_symbol(symbol)[1],
        liquidity="taker", filled_quantity=D(quantity), leaves_quantity=ZERO, ts_event=n,
    )


def conserved(ledger: Ledger) -> None:
    """cash + positions at mark + fees paid == net deposits + realised + unrealised, per asset, exactly."""
    for asset in ledger.assets():
        left = ledger.cash.get(asset, ZERO) + ledger.position_value(asset) + ledger.fees_paid(asset)
        pnl = ledger.realised_pnl(asset) + ledger.unrealised_pnl(asset)
        right = ledger.net_deposits.get(asset, ZERO) + pnl
        assert left == right, (asset, left, right)
        assert ledger.equity(asset) + ledger.fees_paid(asset) == right


def test_a_round_trip_books_cash_fees_and_realised_pnl() -> None:
    ledger = Ledger()
    ledger.deposit("USDT", D("10000"), transfer_id="start")
    ledger.apply(filled("BTC/USDT", "buy", "0.3", "40000", fee="12", n=1))
    ledger.apply(filled("BTC/USDT", "buy", "0.1", "44000", fee="4.4", n=2))
    assert ledger.positions["BTC/USDT"].cost == D("16400.0")
    assert ledger.positions["BTC/USDT"].average_cost() == D("41000.00000000")
    ledger.mark("BTC/USDT", D("42000"))
    assert ledger.unrealised_pnl("USDT") == D("400.0")
    ledger.apply(filled("BTC/USDT", "sell", "0.2", "43000", fee="8.6", n=3))
    assert ledger.realised_pnl("USDT") == D("400.0")  # 0.2 x (43000 - 41000)
    assert ledger.cash["USDT"] == D("10000") - D("12000") - 12 - D("4400") - D("4.4") + D("8600") - D("8.6")
    assert ledger.fees_paid("USDT") == D("25.0")
    conserved(ledger)
    ledger.apply(filled("BTC/USDT", "sell", "0.2", "39000", n=4))
    assert ledger.positions["BTC/USDT"] == Position("BTC/USDT", ZERO, D("0.0"), D("0.0"))
    assert ledger.realised_pnl("USDT") == D("0.0")  # +400 then -400
    conserved(ledger)


def test_a_short_that_flips_long_realises_the_closed_part_only() -> None:
    ledger = Ledger()
    ledger.apply(filled("ETH/USDT", "sell", "2", "3000", n=1))
    ledger.apply(filled("ETH/USDT", "buy", "3", "2500", n=2))
    position = ledger.positions["ETH/USDT"]
    assert position.quantity == D(1)
    assert position.cost == D(2500)
    assert position.realised_pnl == D(1000)  # 2 x (3000 - 2500)
    conserved(ledger)


def test_fees_in_another_asset_leave_that_assets_cash() -> None:
    ledger = Ledger()
    ledger.deposit("BNB", D("1"), transfer_id="bnb")
    ledger.apply(filled("BTC/USDT", "buy", "0.01", "40000", fee="0.001", fee_asset="BNB"))
    assert ledger.cash["BNB"] == D("0.999")
    assert ledger.fees_paid("BNB") == D("0.001")
    assert ledger.balances() == {"BNB": D("0.999"), "BTC": D("0.01"), "USDT": D("-400.00")}
    conserved(ledger)


def test_entries_apply_once_and_withdrawals_cannot_overdraw() -> None:
    ledger = Ledger()
    assert ledger.deposit("USDT", D("100"), transfer_id="a") is True
    assert ledger.deposit("USDT", D("100"), transfer_id="a") is False
    assert ledger.apply(filled("BTC/USDT", "buy", "0.001", "50000")) is True
    assert ledger.apply(filled("BTC/USDT", "buy", "0.001", "50000")) is False
    with pytest.raises(DomainError, match=r"cannot withdraw 60 USDT, the cash is 50\.000"):
        ledger.apply(Transfer(transfer_id="w", asset="USDT", amount=D("-60"), ts_event=1))
    with pytest.raises(DomainError, match="amount must be a non-zero number"):
        ledger.apply(Transfer(transfer_id="z", asset="USDT", amount=D(0), ts_event=1))
    with pytest.raises(DomainError, match="mark of BTC/USDT must be a positive number"):
        ledger.mark("BTC/USDT", D("NaN"))
    assert ledger.version == 2
    assert ledger.cash["USDT"] == D("50.000")


def amounts(max_places: int, low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.builds(lambda n, places: Decimal(n).scaleb(-places), st.integers(low, high),
                     st.integers(0, max_places))


SYMBOLS = ("BTC/USDT", "ETH/USDT", "ETH/BTC")
ASSETS = ("USDT", "BTC", "BNB")
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("transfer"), st.sampled_from(ASSETS), amounts(8, -10**9, 10**9).filter(bool)),
        st.tuples(st.just("fill"), st.sampled_from(SYMBOLS), st.sampled_from(("buy", "sell")),
                  amounts(8, 1, 10**8), amounts(4, 1, 10**9), amounts(8, 0, 10**6), st.sampled_from(ASSETS)),
        st.tuples(st.just("mark"), st.sampled_from(SYMBOLS), amounts(4, 1, 10**9)),
    ),
    min_size=50, max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_value_is_conserved_exactly_after_every_event(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with localcontext(Context(prec=200, traps=[Inexact])):  # the model must not round either
        check_conservation(ops)


def check_conservation(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    ledger = Ledger()
    # an independent model: cash and fees by asset, and per symbol the open quantity and its cash flow
    cash: dict[str, Decimal] = {}
    fees: dict[str, Decimal] = {}
    open_qty: dict[str, Decimal] = {}
    flow: dict[str, Decimal] = {}
    for n, op in enumerate(ops):
        match op:
            case ("transfer", asset, amount):
                try:
                    ledger.apply(Transfer(transfer_id=f"x{n}", asset=asset, amount=amount, ts_event=n))
                except DomainError:
                    assert cash.get(asset, ZERO) + amount < 0
                else:
                    cash[asset] = cash.get(asset, ZERO) + amount
            case ("fill", symbol, side, quantity, price, fee, fee_asset):
                ledger.apply(filled(symbol, side, quantity, price, fee=fee, fee_asset=fee_asset, n=n))
                signed = quantity if side == "buy" else -quantity
                quote = split_symbol(symbol)[1]
                cash[quote] = cash.get(quote, ZERO) - signed * price
                cash[fee_asset] = cash.get(fee_asset, ZERO) - fee
                fees[fee_asset] = fees.get(fee_asset, ZERO) + fee
                open_qty[symbol] = open_qty.get(symbol, ZERO) + signed
                flow[symbol] = flow.get(symbol, ZERO) - signed * price
            case ("mark", symbol, price):
                ledger.mark(symbol, price)
        conserved(ledger)
        assert ledger.cash == cash
        assert ledger.fees == fees
        for symbol, quantity in open_qty.items():
            position = ledger.positions[symbol]
            assert position.quantity == quantity
            if quantity == 0:  # flat: everything the symbol ever made or lost is realised
                assert position.realised_pnl == flow[symbol]
                assert position.cost == 0


def apply_ops(ledger: Ledger, ops: list[tuple], first: int = 0) -> None:  # type: ignore[type-arg]
    """Apply OPS to `ledger` (entry n named after its index counted from `first`), skipping overdrafts."""
    for n, op in enumerate(ops, start=first):
        match op:
            case ("transfer", asset, amount):
                with contextlib.suppress(DomainError):
                    ledger.apply(Transfer(transfer_id=f"x{n}", asset=asset, amount=amount, ts_event=n))
            case ("fill", symbol, side, quantity, price, fee, fee_asset):
                ledger.apply(filled(symbol, side, quantity, price, fee=fee, fee_asset=fee_asset, n=n))
            case ("mark", symbol, price):
                ledger.mark(symbol, price)


@settings(max_examples=60, deadline=None)
@given(OPS, st.integers(0, 300))
def test_books_saved_as_state_and_restored_go_on_exactly_as_the_original(ops: list[tuple], cut: int) -> None:  # type: ignore[type-arg]
    before, after = ops[:cut], ops[cut:]
    ledger = Ledger()
    apply_ops(ledger, before)
    restored = Ledger.from_state(orjson.loads(orjson.dumps(ledger.to_state())))  # as an agent saves it
    assert restored.to_state() == ledger.to_state()
    for books in (ledger, restored):
        apply_ops(books, after, first=len(before))
        apply_ops(books, ops)  # every entry again: the ones booked are duplicates now
    assert restored.snapshot() == ledger.snapshot()
    assert restored.to_state() == ledger.to_state()
    conserved(restored)


def test_a_ledger_that_remembers_n_fill_ids_ignores_recent_duplicate_fills_and_every_transfer() -> None:
    ledger = Ledger(remember=2)
    ledger.deposit("USDT", D("1000"), transfer_id="start")
    fills = [filled("BTC/USDT", "buy", "0.001", "50000", n=n) for n in range(3)]
    assert [ledger.apply(f) for f in fills] == [True, True, True]
    assert ledger.to_state()["applied"] == ["fill:t-1", "fill:t-2"]  # the newest two, oldest first
    assert ledger.to_state()["transfers"] == ["transfer:start"]  # every transfer
    assert ledger.apply(fills[2]) is False
    restored = Ledger.from_state(ledger.to_state())
    assert restored.apply(fills[1]) is False
    assert restored.deposit("USDT", D("1000"), transfer_id="start") is False  # older, but a transfer
    # An entry older than what it remembers is booked again: the bound is for streams, whose
    # duplicates are re-deliveries of recent entries.
    assert restored.apply(fills[0]) is True
    assert restored.positions["BTC/USDT"].quantity == D("0.004")


def test_a_ledger_pickled_before_its_ids_were_split_and_bounded_restores_and_goes_on() -> None:
    old = Ledger()
    old.deposit("USDT", D("1000"), transfer_id="start")
    old.apply(filled("BTC/USDT", "buy", "0.001", "50000", n=1))
    fields = old.__dict__  # as an agent's state pickled it then: one set of ids, no `remember`
    fields["_applied"] = set(fields["_applied"]) | fields.pop("_transfers")
    del fields["remember"]
    restored = pickle.loads(pickle.dumps(old))
    assert restored.deposit("USDT", D("1000"), transfer_id="start") is False
    assert restored.apply(filled("BTC/USDT", "buy", "0.001", "50000", n=1)) is False
    assert restored.apply(filled("BTC/USDT", "buy", "0.001", "50000", n=2)) is True
    assert restored.to_state()["applied"] == ["fill:t-1", "fill:t-2"]
    assert restored.to_state()["transfers"] == ["transfer:start"]


def test_entries_survive_a_record_round_trip_and_replay_to_the_same_books() -> None:
    entries = [
        Transfer(transfer_id="start", asset="USDT", amount=D("1000.50"), ts_event=1),
        filled("BTC/USDT", "buy", "0.00333", "41234.56", fee="0.13731108", n=2),
        filled("BTC/USDT", "sell", "0.00111", "42000.01", fee="0.04662001", n=3),
    ]
    ledger = Ledger.from_entries(entries)
    records = [entry_record(e) for e in entries]
    assert [r["entry_id"] for r in records] == ["transfer:start", "fill:t-2", "fill:t-3"]
    assert records[1]["payload"]["price"] == "41234.56"
    replayed = Ledger.from_entries(entry_from_record(r["kind"], r["payload"]) for r in records)
    assert replayed.snapshot() == ledger.snapshot()
    assert ledger.snapshot()["assets"]["USDT"]["realised_pnl"] == str(ledger.realised_pnl("USDT"))
    with pytest.raises(ValueError, match="unknown ledger entry kind 'mark'"):
        entry_from_record("mark", {})
