"""Real bundled candles as CandleClosed envelopes, a model trained on other symbols, and a runner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from agents.market_data.core import MarketDataCore, Stream
from agents.market_data.files import bundled_candles, read_candles, read_raw_candles
from agents.market_data.quality import RawCandle
from agents.technical.core import TechnicalCore
from agents.technical.model import DecisionModel, TrainParams, build_dataset, fit
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed

HORIZON = 6  # short, so outcomes settle within test-sized series


def raw_rows(symbol: str, rows: int, start: int = 0) -> list[RawCandle]:
    (source,) = [s for s in bundled_candles() if s.symbol == symbol]
    frame = read_raw_candles(source.path).iloc[start:start + rows]
    columns = (frame.open_time, frame.open, frame.high, frame.low, frame.close, frame.volume)
    return [RawCandle(int(t), o, h, lo, c, v) for t, o, h, lo, c, v in zip(*columns, strict=True)]


def envelopes_of(streams: Iterable[tuple[str, list[RawCandle]]], exchange: str = "binance",
                 rename: dict[str, str] | None = None) -> list[Envelope[CandleClosed]]:
    """CandleClosed envelopes of the rows, merged by event time as the market_data agent publishes them."""
    names = rename or {}
    named = [(Stream(exchange, names.get(symbol, symbol), "1h", symbol), rows) for symbol, rows in streams]
    return [env for env in MarketDataCore().run(named) if isinstance(env.payload, CandleClosed)]


def real_envelopes(symbols: Sequence[str] = ("BTC/USDT", "ETH/USDT"), rows: int = 1200,
                   start: int = 0) -> list[Envelope[CandleClosed]]:
    return envelopes_of((symbol, raw_rows(symbol, rows, start)) for symbol in symbols)


def run(core: TechnicalCore, envelopes: Iterable[Envelope[CandleClosed]]) -> list[Envelope[Event]]:
    return [out for env in envelopes for out in core.handle(env)]


def candle_frame(symbol: str) -> pd.DataFrame:
    (source,) = [s for s in bundled_candles() if s.symbol == symbol]
    return read_candles(source.path)


def trained_model(symbols: Sequence[str] = ("SOL/USDT", "ADA/USDT"), version: int = 1) -> DecisionModel:
    """A tree fitted on symbols the tests do not stream, so its decisions on BTC/ETH are out of sample."""
    params = TrainParams(horizon=HORIZON, fee=0.001, folds=2, max_depth=4, min_samples_leaf=100)
    data = build_dataset([candle_frame(symbol) for symbol in symbols], params.horizon, params.fee)
    model = fit(data, params)
    model.version = version
    return model
