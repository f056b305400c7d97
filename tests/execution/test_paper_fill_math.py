"""The paper venue's fill arithmetic as public functions (`candle_price`, `taker_price`, `fill_fee`),
which the backtest sizes all-in orders and books vectorised fills with. Checked by hand; the venue's own
fills are checked against an independent formula in test_paper_gateway.py."""

from __future__ import annotations

from decimal import Decimal

from execution.market import Market
from execution.paper_gateway import FEE_QUANTUM, PaperConfig, candle_price, fill_fee, taker_price

D = Decimal
BTC = Market("binance", "BTC/USDT", tick_size=D("0.01"), step_size=D("0.001"), min_quantity=D("0.001"),
             min_notional=D("10"))


def test_a_float_candle_price_is_made_exact_on_the_tick() -> None:
    assert candle_price(BTC, 100.004) == D("100.00")
    assert candle_price(BTC, 0.1 + 0.2) == D("0.30")  # its shortest repr, 0.30000000000000004


def test_slippage_moves_a_taker_fill_against_the_order_rounded_against_it() -> None:
    assert taker_price(BTC, "buy", D("100.00"), D("2")) == D("100.02")
    assert taker_price(BTC, "buy", D("100.01"), D("2")) == D("100.04")  # 100.030002 rounds up
    assert taker_price(BTC, "sell", D("100.01"), D("2")) == D("99.98")  # 99.989998 rounds down
    assert taker_price(BTC, "buy", D("100.00"), D("0")) == D("100.00")


def test_the_candle_and_the_limit_cap_the_slipped_price_only_when_given() -> None:
    assert taker_price(BTC, "buy", D("100.00"), D("50")) == D("100.50")  # sizing before the candle: worst
    assert taker_price(BTC, "buy", D("100.00"), D("50"), high=D("100.20")) == D("100.20")
    assert taker_price(BTC, "buy", D("100.00"), D("50"), high=D("100.20"), limit=D("100.10")) == D("100.10")
    assert taker_price(BTC, "sell", D("100.00"), D("50"), low=D("99.80")) == D("99.80")
    assert taker_price(BTC, "sell", D("100.00"), D("50"), low=D("99.80"), limit=D("99.90")) == D("99.90")
    assert taker_price(BTC, "sell", D("100.00"), D("50"), high=D("100.20")) == D("99.50")  # a sell's cap: low


def test_the_fee_rounds_up_to_the_quantum() -> None:
    assert PaperConfig().fee_quantum == FEE_QUANTUM
    assert fill_fee(D("100.02"), D("0.5"), D("0.001")) == D("0.05001")
    assert fill_fee(D("3"), D("0.000000333"), D("0.001")) == D("0.00000001")  # 0.000000000999 -> one quantum
    assert fill_fee(D("3"), D("1"), D("0.001"), quantum=D("0.01")) == D("0.01")
