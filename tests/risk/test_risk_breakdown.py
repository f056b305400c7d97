"""The risk breakdown of portfolios held in the bundled 2022 Binance candles."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from agents.market_data.files import bundled_candles, read_candles
from execution.risk import risk_breakdown
from topics.trading import PortfolioSnapshot, PositionSnapshot

D = Decimal
WINDOW = 720  # the last 30 days of hourly returns
HOURS_PER_YEAR = 24 * 365


@pytest.fixture(scope="module")
def candles() -> dict[str, pd.DataFrame]:
    wanted = {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    return {
        source.symbol: read_candles(source.path, symbol=source.symbol, timeframe=source.timeframe)
        for source in bundled_candles() if source.symbol in wanted
    }


def returns_of(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()[-(WINDOW + 1):]))


def holding(symbol: str, quantity: str, frame: pd.DataFrame) -> PositionSnapshot:
    mark = D(repr(float(frame["close"].iloc[-1])))
    return PositionSnapshot(exchange="binance", symbol=symbol, quantity=D(quantity), mark_price=mark)


def inputs(candles: dict[str, pd.DataFrame]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    returns = {f"binance:{symbol}": returns_of(frame) for symbol, frame in candles.items()}
    volumes = {
        f"binance:{symbol}": float((frame["close"] * frame["volume"]).iloc[-24:].sum())
        for symbol, frame in candles.items()
    }
    return returns, volumes


def test_the_candles_line_up_in_time(candles: dict[str, pd.DataFrame]) -> None:
    times = [frame["open_time"].iloc[-(WINDOW + 1):].to_numpy() for frame in candles.values()]
    assert all(np.array_equal(times[0], other) for other in times[1:])


def test_a_long_crypto_basket_is_concentrated_and_correlated(candles: dict[str, pd.DataFrame]) -> None:
    book = PortfolioSnapshot(ts=1_665_486_000_000, equity=D("100000"), positions=(
        holding("BTC/USDT", "1.5", candles["BTC/USDT"]),
        holding("ETH/USDT", "10", candles["ETH/USDT"]),
        holding("SOL/USDT", "100", candles["SOL/USDT"]),
    ))
    returns, volumes = inputs(candles)
    breakdown = risk_breakdown(book, returns=returns, quote_volumes=volumes, periods_per_year=HOURS_PER_YEAR)

    notionals = [p.quantity * p.mark_price for p in book.positions]
    gross = sum(notionals, D(0))
    assert breakdown.gross_exposure == gross == breakdown.net_exposure
    assert breakdown.leverage == pytest.approx(float(gross / book.equity))
    shares = [float(n / gross) for n in notionals]
    assert breakdown.concentration_hhi == pytest.approx(sum(s * s for s in shares))
    assert breakdown.largest_share == pytest.approx(max(shares))
    assert 1 / 3 <= breakdown.concentration_hhi < 1

    # 2022's majors moved together: hourly correlations well above zero.
    assert breakdown.correlation is not None
    assert 0.5 < breakdown.correlation < 1
    pairs = np.corrcoef(np.vstack(list(returns.values())))[np.triu_indices(3, k=1)]
    assert breakdown.correlation == pytest.approx(pairs.mean())

    vols = [h.volatility for h in breakdown.holdings]
    assert all(v is not None and 0.2 < v < 3 for v in vols)  # annualised: crypto-sized, not hourly
    weights = [h.weight for h in breakdown.holdings]
    assert breakdown.volatility is not None
    # Diversification: no more than the weighted sum of the parts, and positive.
    assert 0 < breakdown.volatility <= sum(w * v for w, v in zip(weights, vols, strict=True)) + 1e-12

    btc = breakdown.holdings[0]
    assert btc.liquidity == pytest.approx(float(notionals[0]) / volumes["binance:BTC/USDT"])
    assert breakdown.liquidity == max(h.liquidity for h in breakdown.holdings if h.liquidity is not None)
    assert breakdown.liquidity < 0.01  # a 100k book is a sliver of a day's Binance turnover


def test_a_hedge_cuts_net_exposure_and_volatility(candles: dict[str, pd.DataFrame]) -> None:
    returns, volumes = inputs(candles)
    btc, eth = candles["BTC/USDT"], candles["ETH/USDT"]
    eth_qty = str(round(1.5 * float(btc["close"].iloc[-1]) / float(eth["close"].iloc[-1]), 3))
    long_long = PortfolioSnapshot(ts=0, equity=D("100000"), positions=(
        holding("BTC/USDT", "1.5", btc), holding("ETH/USDT", eth_qty, eth)))
    hedged = PortfolioSnapshot(ts=0, equity=D("100000"), positions=(
        holding("BTC/USDT", "1.5", btc), holding("ETH/USDT", "-" + eth_qty, eth)))
    both = risk_breakdown(long_long, returns=returns, quote_volumes=volumes, periods_per_year=HOURS_PER_YEAR)
    pair = risk_breakdown(hedged, returns=returns, quote_volumes=volumes, periods_per_year=HOURS_PER_YEAR)
    assert pair.gross_exposure == both.gross_exposure
    assert abs(pair.net_exposure) < both.net_exposure / 100
    assert pair.volatility is not None
    assert both.volatility is not None
    assert pair.volatility < both.volatility / 2
    assert pair.correlation == both.correlation  # correlation of the holdings, whatever their sign


def test_what_cannot_be_measured_is_left_unset(candles: dict[str, pd.DataFrame]) -> None:
    btc = holding("BTC/USDT", "0.01", candles["BTC/USDT"])
    eth = holding("ETH/USDT", "0.1", candles["ETH/USDT"])
    one = PortfolioSnapshot(ts=0, equity=D("1000"), positions=(btc,))
    alone = risk_breakdown(one, returns={"binance:BTC/USDT": returns_of(candles["BTC/USDT"])})
    assert alone.correlation is None  # needs two holdings
    assert alone.concentration_hhi == 1.0
    assert alone.liquidity is None  # no volumes given
    assert alone.volatility == pytest.approx(float(np.std(returns_of(candles["BTC/USDT"]), ddof=1))
                                             * float(one.positions[0].notional / one.equity))
    unknown = risk_breakdown(one)
    assert (unknown.volatility, unknown.correlation, unknown.holdings[0].volatility) == (None, None, None)
    empty = risk_breakdown(PortfolioSnapshot(ts=0, equity=D("1000")))
    assert (empty.gross_exposure, empty.leverage, empty.concentration_hhi) == (D(0), 0.0, None)
    broke = risk_breakdown(PortfolioSnapshot(ts=0, equity=D("-5")))
    assert broke.leverage is None
    two = PortfolioSnapshot(ts=0, equity=D("1000"), positions=(btc, eth))
    with pytest.raises(ValueError, match="one length"):
        risk_breakdown(two, returns={"binance:BTC/USDT": [0.01, 0.02], "binance:ETH/USDT": [0.01]})
