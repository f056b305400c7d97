"""The order state machine, client order ids and the validation that turns bad orders into rejections."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest
from execution_data import BTC, MARKETS, D, new_order, request
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import DomainError
from execution import order as orders
from execution.order import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransitionError,
    Order,
    client_order_id,
    create_order,
)
from topics.envelope import Envelope
from topics.orders import CLIENT_ORDER_ID_PATTERN, OrderFilled, OrderUpdated
from topics.registry import ORDERS
from topics.serialization import decode, encode

STATUSES = ("new", "submitted", "partially_filled", "filled", "cancelled", "rejected", "expired")
LEGAL = {
    ("new", "submitted"), ("new", "rejected"),
    ("submitted", "partially_filled"), ("submitted", "filled"), ("submitted", "cancelled"),
    ("submitted", "rejected"), ("submitted", "expired"),
    ("partially_filled", "partially_filled"), ("partially_filled", "filled"),
    ("partially_filled", "cancelled"), ("partially_filled", "expired"),
}


def test_the_transition_table_is_the_documented_machine() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert all(not TRANSITIONS[s] for s in TERMINAL)


@pytest.mark.parametrize(("source", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_every_transition_is_allowed_or_refused_naming_both_states(source: str, target: str) -> None:
    order = replace(new_order(), status=source)  # type: ignore[arg-type]
    if (source, target) in LEGAL:
        changed, events = orders.transition(order, target, now=5, reasons=["why"])  # type: ignore[arg-type]
        assert changed.status == target
        assert changed.seq == order.seq + 1
        [event] = events
        assert isinstance(event, OrderUpdated)
        assert (event.previous_status, event.status, event.seq, event.reasons) == (source, target, 1, ["why"])
    else:
        with pytest.raises(IllegalTransitionError, match=f"illegal transition {source} -> {target}"):
            orders.transition(order, target, now=5)  # type: ignore[arg-type]


def test_a_full_life_emits_one_event_per_change_and_folds_back() -> None:
    order, events = create_order(request(quantity=D("0.03")), BTC, now=10)
    order, more = orders.submit(order, now=11, venue_order_id="v-1")
    events += more
    for i in range(3):
        order, more = orders.fill(order, now=20 + i, price=D("46000.5") + i, quantity=D("0.01"),
                                  fee=D("0.046"), fee_asset="USDT", liquidity="taker")
        events += more
    updates = [e for e in events if isinstance(e, OrderUpdated)]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert [u.status for u in updates] == [
        "new", "submitted", "partially_filled", "partially_filled", "filled",
    ]
    assert [u.seq for u in updates] == [0, 1, 2, 3, 4]
    assert [f.leaves_quantity for f in fills] == [D("0.02"), D("0.01"), D("0")]
    assert len({f.trade_id for f in fills}) == 3
    assert order.filled_notional == D("0.01") * (D("46000.5") + D("46001.5") + D("46002.5"))
    assert order.average_price() == D("46001.50000000")
    assert Order.from_event(updates[-1]) == order
    with pytest.raises(IllegalTransitionError, match="filled -> cancelled"):
        orders.cancel(order, now=30, reason="too late")


def test_an_overfill_is_refused_and_changes_nothing() -> None:
    order, _ = orders.submit(new_order(quantity=D("0.01")), now=1)
    with pytest.raises(DomainError, match=r"a fill of 0\.02 exceeds the 0\.01 left"):
        orders.fill(order, now=2, price=D(1), quantity=D("0.02"), fee=D(0), fee_asset="USDT",
                    liquidity="maker")
    with pytest.raises(DomainError, match="positive price and quantity"):
        orders.fill(order, now=2, price=D("NaN"), quantity=D("0.01"), fee=D(0), fee_asset="USDT",
                    liquidity="maker")
    with pytest.raises(IllegalTransitionError, match="new -> filled"):
        orders.fill(new_order(), now=2, price=D(1), quantity=D("0.01"), fee=D(0), fee_asset="USDT",
                    liquidity="maker")


COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("submit")), st.tuples(st.just("cancel")), st.tuples(st.just("expire")),
        st.tuples(st.just("reject")), st.tuples(st.just("fill"), st.integers(min_value=1, max_value=60)),
        st.tuples(st.just("amend"), st.integers(min_value=1, max_value=120)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(COMMANDS)
def test_random_command_sequences_keep_the_invariants(commands: list[tuple]) -> None:  # type: ignore[type-arg]
    order = new_order(quantity=D("0.0100"))
    seen: list[OrderUpdated] = []
    for now, command in enumerate(commands, start=1):
        before = order
        try:
            match command:
                case ("submit",):
                    order, events = orders.submit(order, now=now)
                case ("cancel",):
                    order, events = orders.cancel(order, now=now, reason="test")
                case ("expire",):
                    order, events = orders.expire(order, now=now, reason="test")
                case ("reject",):
                    order, events = orders.reject(order, now=now, reasons=["test"])
                case ("fill", units):
                    order, events = orders.fill(
                        order, now=now, price=D("46000"), quantity=D("0.0001") * units, fee=D("0.01"),
                        fee_asset="USDT", liquidity="taker",
                    )
                case ("amend", units):
                    order, events = orders.amend(order, BTC, now=now, quantity=D("0.0001") * units)
        except DomainError:
            assert order == before  # a refused command changes nothing
            continue
        assert not before.is_terminal, "terminal states absorb"
        seen += [e for e in events if isinstance(e, OrderUpdated)]
        assert D(0) <= order.filled_quantity <= order.quantity
        assert order.status != "filled" or order.filled_quantity == order.quantity
        assert order.status != "partially_filled" or D(0) < order.filled_quantity < order.quantity
        assert Order.from_event(seen[-1]) == order
    assert [u.seq for u in seen] == list(range(1, len(seen) + 1))


def test_the_client_order_id_is_derived_from_the_decision() -> None:
    first = client_order_id("risk:dec-42")
    assert first == client_order_id("risk:dec-42")
    assert first != client_order_id("risk:dec-43")
    legs = {client_order_id("risk:dec-42", leg) for leg in range(5)}
    assert len(legs) == 5
    assert first in legs
    assert re.fullmatch(CLIENT_ORDER_ID_PATTERN, first)
    assert len(first) == 27
    again, _ = create_order(request(decision_id="risk:dec-42"), BTC, now=99)
    assert again.client_order_id == first
    with pytest.raises(ValueError, match="needs a decision id"):
        client_order_id("")


NAN, INF = Decimal("NaN"), Decimal("Infinity")
BAD = [
    ({"quantity": D(0)}, "quantity must be positive, got 0"),
    ({"quantity": D("-0.5")}, "quantity must be positive, got -0.5"),
    ({"quantity": NAN}, "quantity must be a finite number, got NaN"),
    ({"quantity": INF}, "quantity must be a finite number, got Infinity"),
    ({"order_type": "limit", "limit_price": NAN}, "limit_price must be a finite number, got NaN"),
    ({"order_type": "limit", "limit_price": D("-1")}, "limit_price must be positive"),
    ({"order_type": "limit"}, "a limit order needs a limit_price"),
    ({"order_type": "stop", "limit_price": D("46000")}, "a stop order needs a stop_price"),
    ({"limit_price": D("46000")}, "a market order takes no limit_price"),
    ({"symbol": "NOPE/USDT"}, "unknown symbol NOPE/USDT on binance"),
    ({"quantity": D("0.000001")}, "quantity 0.000001 is below the minimum 0.00001"),
    ({"quantity": D("0.000015")}, "quantity 0.000015 is finer than the step size 0.00001"),
    ({"quantity": D("0.0001")}, "notional 4.6000 is below the minimum 5"),
    ({"order_type": "limit", "limit_price": D("46000.005")}, "limit_price 46000.005 is finer than the tick"),
    ({"expire_at": 50}, "expire_at 50 is not after the order's time 100"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD, ids=[reason for _, reason in BAD])
def test_bad_orders_are_rejected_with_reasons_and_kept_whole(changes: dict[str, object], reason: str) -> None:
    bad = request(**changes)
    order, events = create_order(bad, MARKETS.get(bad.symbol), now=100)
    assert order.status == "rejected"
    new, rejected = events
    assert isinstance(new, OrderUpdated)
    assert isinstance(rejected, OrderUpdated)
    assert (new.status, rejected.previous_status, rejected.status) == ("new", "new", "rejected")
    assert any(reason in r for r in rejected.reasons), rejected.reasons
    # nothing is lost: the rejection travels and decodes with the request exactly as it came
    envelope = Envelope.create(rejected, key="binance:BTC/USDT", ts=100, source="test")
    back = decode(ORDERS, encode(envelope)).payload
    assert isinstance(back, OrderUpdated)
    assert str(back.quantity) == str(bad.quantity)
    assert back.reasons == rejected.reasons


def test_a_request_can_fail_several_rules_at_once() -> None:
    _order, events = create_order(request(quantity=D("-1"), order_type="stop"), BTC, now=1)
    assert events[-1].reasons == ["quantity must be positive, got -1", "a stop order needs a stop_price"]  # type: ignore[union-attr]


def test_money_is_written_as_json_strings() -> None:
    order, _ = orders.submit(new_order(quantity=D("0.01000")), now=1)
    _, events = orders.fill(order, now=2, price=D("46000.10"), quantity=D("0.01"), fee=D("0.00046000"),
                            fee_asset="USDT", liquidity="taker")
    update, fill = (orjson.loads(e.model_dump_json()) for e in events)
    assert update["filled_quantity"] == "0.01"
    assert update["filled_notional"] == "460.0010"
    assert (fill["price"], fill["quantity"], fill["fee"]) == ("46000.10", "0.01", "0.00046000")


def test_amend_changes_an_open_order_and_refuses_bad_values() -> None:
    order, _ = orders.submit(new_order(order_type="limit", limit_price=D("45000"), quantity=D("0.02")), now=1)
    order, _ = orders.fill(order, now=2, price=D("45000"), quantity=D("0.01"), fee=D(0), fee_asset="USDT",
                           liquidity="maker")
    amended, [event] = orders.amend(order, BTC, now=3, limit_price=D("44000.5"))
    assert amended.limit_price == D("44000.5")
    assert amended.status == "partially_filled"
    assert event.reasons == ["amended: limit_price 45000 -> 44000.5"]  # type: ignore[union-attr]
    with pytest.raises(DomainError, match=r"not above the 0\.01 already filled"):
        orders.amend(order, BTC, now=3, quantity=D("0.01"))
    with pytest.raises(DomainError, match="finer than the tick size"):
        orders.amend(order, BTC, now=3, limit_price=D("44000.001"))
    with pytest.raises(DomainError, match="only an open order can be amended"):
        orders.amend(new_order(), BTC, now=3, quantity=D("0.5"))
