"""The live ccxt source, on real ccxt exchanges whose HTTP layer replays recorded exchange responses.

The fixtures are excerpts of ccxt's own offline "static" tests (see fixtures/README.md). Only the
transport is replaced: `exchange.fetch`, the single HTTP entry point of ccxt's async Exchange,
answers from a small simulated venue whose candles are the recorded rows shifted in time.
ccxt builds every request, parses every reply, maps error bodies to its exceptions and throttles
with its real rate limiter. A network failure is real as well: ccxt's own fetch is sent to a
closed localhost port. The WebSocket test runs ccxt.pro against a local WebSocket server that
speaks Binance's kline stream format.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from agents.market_data.ccxt_source import (
    CandleCursor,
    CcxtMarketSource,
    Gap,
    backoff_delay,
    translate_error,
)
from agents.market_data.quality import RawCandle
from config.errors import ConfigError, CryptiqError, RetriableError
from config.settings import ExchangeConfig, MarketConfig
from topics.market import TickerUpdated
from topics.system import DeadLettered

FIXTURES = Path(__file__).parent / "fixtures"
HOUR = 3_600_000
DAY = 86_400_000
POLL_S = 10.0  # the poll interval of every test source; the fake sleep recognises polls by it
CAP_S = 8.0  # market.reconnect_max_backoff_s in these tests
T = TypeVar("T")


def recorded(exchange_id: str, method: str) -> dict[str, Any]:
    """The first recorded call of `method` in ccxt's static response file of `exchange_id`."""
    methods = json.loads((FIXTURES / f"{exchange_id}_responses.json").read_text())["methods"]
    return copy.deepcopy(methods[method][0])


def load_recorded_markets(exchange: Any) -> None:
    """Give `exchange` the recorded markets, completed with ccxt's defaults for keys they predate."""
    recorded_markets = json.loads((FIXTURES / f"{exchange.id}_markets.json").read_text()).values()
    exchange.set_markets([exchange.safe_market_structure(m) for m in recorded_markets])


def closed_port() -> int:
    """A localhost port nobody listens on: connecting to it fails like a venue that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ScriptEndedError(Exception):
    """The test's script of market moves is over; raised from the fake sleep to end the stream."""


# --------------------------------------------------------------------------- simulated venues


class Venue:
    """A venue over recorded-format rows, answering ccxt's requests the way the real one does.

    Candle `i` opens at `t0 + i * step`; candle `now` is in progress: it comes back as a freshly
    opened candle (open = high = low = close, no volume) and never with its final values.
    `holes` are candles the venue has no data for; `page_cap` is the most rows one reply holds.
    `failures` are consumed one per request; `fail_requests` fails the n-th request (from 1).
    """

    errors: ClassVar[dict[str, tuple[int, Any]]] = {}

    def __init__(
        self, exchange: Any, *, count: int, now: int, holes: tuple[int, ...] = (), page_cap: int = 1000
    ) -> None:
        self.exchange = exchange
        self.indexes = [i for i in range(count) if i not in holes]
        self.now = now
        self.page_cap = page_cap
        self.failures: list[str] = []
        self.fail_requests: dict[int, str] = {}
        self.requests: list[dict[str, str]] = []
        self.ticker_shift_ms = 0
        self._ccxt_fetch = exchange.fetch
        exchange.fetch = self.fetch

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.requests.append({"path": parts.path, **query})
        if self.failures or len(self.requests) in self.fail_requests:
            kind = self.fail_requests.get(len(self.requests)) or self.failures.pop(0)
            if kind == "down":  # ccxt's real fetch, against a port with nothing behind it
                dead_url = f"http://127.0.0.1:{closed_port()}{parts.path}"
                return await self._ccxt_fetch(dead_url, method, headers, body)
            status, reply = self.errors[kind]
        else:
            status, reply = 200, self.answer(parts.path, query)
        text = json.dumps(reply)
        # what ccxt's fetch does with a reply: the exchange's error mapping, then the HTTP status
        self.exchange.handle_errors(status, "", url, method, {}, text, reply, headers, body)
        self.exchange.handle_http_status_code(status, "", url, method, text)
        return reply

    def visible(self) -> list[int]:
        return [i for i in self.indexes if i <= self.now]

    def answer(self, path: str, query: dict[str, str]) -> Any:
        raise NotImplementedError


class BinanceVenue(Venue):
    """Binance spot: /api/v3/klines and /api/v3/ticker/24hr, rows from the recorded 1h klines."""

    # Binance's documented error bodies, mapped to exceptions by ccxt's binance.handle_errors
    errors: ClassVar[dict[str, tuple[int, Any]]] = {
        "auth": (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}),
        "bad_symbol": (400, {"code": -1121, "msg": "Invalid symbol."}),
    }
    RECORDED = recorded("binance", "fetchOHLCV")
    T0 = RECORDED["httpResponse"][0][0]

    @classmethod
    def open_time(cls, i: int) -> int:
        return cls.T0 + i * HOUR

    @classmethod
    def kline(cls, i: int) -> list[Any]:
        row = list(cls.RECORDED["httpResponse"][i % 3])
        row[0], row[6] = cls.open_time(i), cls.open_time(i) + HOUR - 1
        return row

    @classmethod
    def opening(cls, i: int) -> list[Any]:
        row = cls.kline(i)
        row[2] = row[3] = row[4] = row[1]
        row[5], row[7], row[8], row[9], row[10] = "0.00000000", "0.00000000", 0, "0.00000000", "0.00000000"
        return row

    @classmethod
    def final(cls, i: int) -> RawCandle:
        row = cls.kline(i)
        return RawCandle(row[0], *(float(v) for v in row[1:6]))

    def answer(self, path: str, query: dict[str, str]) -> Any:
        if path == "/api/v3/klines":
            assert query["symbol"] == "BTCUSDT"
            assert query["interval"] == "1h"
            limit = min(int(query["limit"]), self.page_cap)
            if "startTime" in query:
                chosen = [i for i in self.visible() if self.open_time(i) >= int(query["startTime"])][:limit]
            else:
                chosen = self.visible()[-limit:]
            return [self.opening(i) if i == self.now else self.kline(i) for i in chosen]
        if path == "/api/v3/ticker/24hr":
            ticker = recorded("binance", "fetchTicker")["httpResponse"]
            ticker["closeTime"] = str(int(ticker["closeTime"]) + self.ticker_shift_ms)
            return [ticker] if "symbols" in query else ticker
        raise AssertionError(f"unexpected request {path}?{query}")


class BlofinVenue(Venue):
    """Blofin perpetuals: /api/v1/market/candles (newest first, before/after bounds) and tickers."""

    RECORDED = recorded("blofin", "fetchOHLCV")
    T0 = int(RECORDED["httpResponse"]["data"][0][0])

    @classmethod
    def open_time(cls, i: int) -> int:
        return cls.T0 + i * DAY

    @classmethod
    def candle(cls, i: int, *, confirmed: bool) -> list[str]:
        row = list(cls.RECORDED["httpResponse"]["data"][0])
        row[0], row[8] = str(cls.open_time(i)), "1" if confirmed else "0"
        if not confirmed:
            row[2] = row[3] = row[4] = row[1]
            row[5] = row[6] = row[7] = "0"
        return row

    def answer(self, path: str, query: dict[str, str]) -> Any:
        if path == "/api/v1/market/candles":
            assert query["instId"] == "BTC-USDT"
            assert query["bar"] == "1D"
            chosen = self.visible()
            if "before" in query:
                low, high = int(query["before"]), int(query["after"])
                chosen = [i for i in chosen if low < self.open_time(i) < high]
            chosen = chosen[-int(query["limit"]):]
            data = [self.candle(i, confirmed=i != self.now) for i in reversed(chosen)]
            return {"code": "0", "msg": "success", "data": data}
        if path == "/api/v1/market/tickers":
            return recorded("blofin", "fetchTicker")["httpResponse"]
        raise AssertionError(f"unexpected request {path}?{query}")


@dataclass
class Script:
    """The injected sleep: records every delay and, at each poll pause, moves the venue on.

    Each step is the index of the candle in progress for the next round, optionally with
    failures for the next requests. When the steps run out the stream is stopped.
    """

    venue: Venue
    steps: list[int | tuple[int, list[str]]]
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if seconds == POLL_S:
            if not self.steps:
                raise ScriptEndedError
            step = self.steps.pop(0)
            now, failures = step if isinstance(step, tuple) else (step, [])
            self.venue.now = now
            self.venue.failures.extend(failures)
        await asyncio.sleep(0)

    @property
    def backoffs(self) -> list[float]:
        return [d for d in self.delays if d != POLL_S]


def market(**overrides: Any) -> MarketConfig:
    values: dict[str, Any] = {
        "source": "ccxt:binance", "symbols": ["BTC/USDT"], "timeframes": ["1h"], "poll_interval_s": POLL_S,
        "reconnect_max_backoff_s": CAP_S, "backfill_limit": 1000,
    }
    return MarketConfig(**(values | overrides))


def source_for(venue: Venue, script: Script, cfg: MarketConfig, **options: Any) -> CcxtMarketSource:
    return CcxtMarketSource(venue.exchange, cfg, sleep=script, rng=random.Random(7), **options)


async def drain(items: AsyncIterator[T]) -> list[T]:
    """Everything a source yields until its script is over."""
    out: list[T] = []
    try:
        async for item in items:
            out.append(item)
    except ScriptEndedError:
        return out
    raise AssertionError("a live source never ends by itself")


def opens(candles: list[Any]) -> list[int]:
    return [raw.open_time for _, raw in candles]


@pytest.fixture
async def binance() -> AsyncIterator[Any]:
    exchange = ccxt.async_support.binance({"enableRateLimit": True})
    load_recorded_markets(exchange)
    yield exchange
    await exchange.close()


@pytest.fixture
async def blofin() -> AsyncIterator[Any]:
    exchange = ccxt.async_support.blofin({"enableRateLimit": True})
    load_recorded_markets(exchange)
    yield exchange
    await exchange.close()


# --------------------------------------------------------------------------- the pure cursor


def row(t: int, close: float = 100.0) -> list[float]:
    return [t * HOUR, 100.0, max(110.0, close), 90.0, close, 1.0]


def to_raw(values: list[float]) -> RawCandle:
    return RawCandle(int(values[0]), *values[1:])


def test_cursor_holds_back_the_newest_row_until_a_later_one_exists() -> None:
    cursor = CandleCursor(HOUR)
    assert cursor.advance([row(4), row(5)]).closed == (to_raw(row(4)),)
    assert cursor.advance([row(4), row(5, close=101)]).closed == ()  # 5 is still in progress
    step = cursor.advance([row(5, close=102), row(6)])
    assert step.closed == (to_raw(row(5, close=102)),)
    assert cursor.last_closed == 5 * HOUR


def test_a_websocket_candle_closes_with_the_last_values_the_stream_sent() -> None:
    cursor = CandleCursor(HOUR)
    assert cursor.advance([row(5)], live=True).closed == ()
    assert cursor.advance([row(5, close=101)], live=True).closed == ()  # an update of the open candle
    step = cursor.advance([row(6)], live=True)  # the next candle opened; 5 came in earlier batches
    assert step.closed == (to_raw(row(5, close=101)),)


def test_after_a_websocket_break_the_open_candle_must_come_from_rest() -> None:
    cursor = CandleCursor(HOUR, last_closed=4 * HOUR)
    cursor.advance([row(5, close=101)], live=True)
    cursor.interrupted()  # its final updates may have been sent while the connection was down
    step = cursor.advance([row(8), row(9)])
    assert step.closed == ()
    assert step.gap == Gap(5 * HOUR, 8 * HOUR)


def test_a_rest_snapshot_of_an_open_candle_is_never_emitted() -> None:
    cursor = CandleCursor(HOUR, last_closed=4 * HOUR)
    assert cursor.advance([row(5, close=101)]).closed == ()  # 5 in progress in this reply
    step = cursor.advance([row(6), row(7)])  # the next reply skips 5: it must be fetched, not guessed
    assert step.closed == ()
    assert step.gap == Gap(5 * HOUR, 6 * HOUR)


def test_cursor_never_repeats_or_goes_back() -> None:
    cursor = CandleCursor(HOUR)
    first = cursor.advance([row(3), row(1), row(2), row(2, close=102), row(4)])
    assert [c.open_time // HOUR for c in first.closed] == [1, 2, 3]
    assert first.closed[1].close == 102  # a fresher copy of the same candle wins
    again = cursor.advance([row(0), row(1), row(2), row(3), row(4), row(5)])
    assert [c.open_time // HOUR for c in again.closed] == [4]


def test_cursor_stops_at_a_gap_and_names_it() -> None:
    cursor = CandleCursor(HOUR, last_closed=2 * HOUR)
    step = cursor.advance([row(3), row(4), row(7), row(8), row(9)])
    assert [c.open_time // HOUR for c in step.closed] == [3, 4]
    assert step.gap == Gap(5 * HOUR, 7 * HOUR)
    assert step.gap.missing(HOUR) == 2
    filled = cursor.advance([row(5), row(6), row(7), row(8), row(9)])
    assert [c.open_time // HOUR for c in filled.closed] == [5, 6, 7, 8]
    assert filled.gap is None


def test_cursor_reports_a_gap_before_the_candle_in_progress() -> None:
    cursor = CandleCursor(HOUR, last_closed=2 * HOUR)
    step = cursor.advance([row(6)])
    assert step.closed == ()
    assert step.gap == Gap(3 * HOUR, 6 * HOUR)


def test_cursor_skip_continues_after_an_unfillable_gap() -> None:
    cursor = CandleCursor(HOUR, last_closed=2 * HOUR)
    gap = cursor.advance([row(6), row(7)]).gap
    assert gap is not None
    cursor.skip(gap)
    assert [c.open_time // HOUR for c in cursor.advance([row(6), row(7)]).closed] == [6]


def test_backoff_is_exponential_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(attempt, 8.0, rng) for attempt in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 8.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ccxt.RequestTimeout, RetriableError),
        (ccxt.ExchangeNotAvailable, RetriableError),
        (ccxt.NetworkError, RetriableError),
        (ccxt.RateLimitExceeded, RetriableError),
        (ccxt.BadResponse, RetriableError),
        (ccxt.AuthenticationError, ConfigError),
        (ccxt.PermissionDenied, ConfigError),
        (ccxt.BadSymbol, ConfigError),
        (ccxt.NotSupported, ConfigError),
        (ccxt.ExchangeError, CryptiqError),
    ],
)
def test_ccxt_errors_are_translated_at_one_boundary(error: type[ccxt.BaseError], expected: type) -> None:
    translated = translate_error("binance", "fetch_ohlcv", "BTC/USDT", error("binance {\n \"code\": -1}"))
    assert type(translated) is expected
    message = str(translated)
    assert "\n" not in message
    assert "binance fetch_ohlcv BTC/USDT" in message


# --------------------------------------------------------------------------- REST polling


async def test_poll_emits_only_candles_that_a_later_candle_has_closed(binance: Any) -> None:
    venue = BinanceVenue(binance, count=40, now=9)
    script = Script(venue, [])
    candles = await drain(source_for(venue, script, market(), poll_limit=10).candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(9)]  # 9 is in progress
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(9)]
    # ccxt parsed the recorded reply exactly as its own static test expects
    assert [list(raw) for _, raw in candles[:3]] == BinanceVenue.RECORDED["parsedResponse"]
    stream = candles[0][0]
    assert (stream.exchange, stream.symbol, stream.timeframe, stream.key) == (
        "binance", "BTC/USDT", "1h", "binance:BTC/USDT:1h")


async def test_overlapping_polls_emit_every_candle_once_with_its_final_values(binance: Any) -> None:
    venue = BinanceVenue(binance, count=40, now=9)
    script = Script(venue, [14, 14, 16])
    source = source_for(venue, script, market(), poll_limit=10)
    candles = await drain(source.candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(16)]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(16)]
    assert source.positions() == {"binance:BTC/USDT:1h": BinanceVenue.open_time(15)}
    assert [r.get("startTime") for r in venue.requests] == [None] * 4  # no gap, no backfill


async def test_a_gap_is_backfilled_before_newer_candles(binance: Any) -> None:
    venue = BinanceVenue(binance, count=60, now=9)
    script = Script(venue, [40])
    candles = await drain(source_for(venue, script, market(), poll_limit=10).candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(40)]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(40)]
    backfills = [r for r in venue.requests if "startTime" in r]
    assert backfills == [{"path": "/api/v3/klines", "interval": "1h", "limit": "22", "symbol": "BTCUSDT",
                          "startTime": str(BinanceVenue.open_time(9))}]


async def test_backfill_limit_spreads_a_long_gap_over_rounds_oldest_first(binance: Any) -> None:
    venue = BinanceVenue(binance, count=60, now=9)
    script = Script(venue, [40, 40, 40, 40, 40])
    candles = await drain(source_for(venue, script, market(backfill_limit=8), poll_limit=10).candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(40)]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(40)]
    backfills = [r for r in venue.requests if "startTime" in r]
    assert [int(r["limit"]) for r in backfills] == [8, 8, 6]
    assert [int(r["startTime"]) for r in backfills] == [BinanceVenue.open_time(i) for i in (9, 17, 25)]


async def test_a_gap_the_venue_has_no_data_for_is_skipped_not_waited_on(binance: Any) -> None:
    venue = BinanceVenue(binance, count=40, now=9, holes=(12, 13, 14, 15))
    script = Script(venue, [20, 22])
    candles = await drain(source_for(venue, script, market(), poll_limit=8).candles())
    expected = [i for i in range(2, 22) if i not in (12, 13, 14, 15)]  # a fresh start has no history
    assert opens(candles) == [BinanceVenue.open_time(i) for i in expected]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in expected]


async def test_network_errors_back_off_capped_then_the_outage_is_backfilled(binance: Any) -> None:
    venue = BinanceVenue(binance, count=60, now=9)
    script = Script(venue, [(30, ["down"] * 7)])
    candles = await drain(source_for(venue, script, market(), poll_limit=10).candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(30)]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(30)]
    assert len(script.backoffs) == 7
    for attempt, delay in enumerate(script.backoffs):
        ceiling = min(CAP_S, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(script.backoffs) <= CAP_S


async def test_a_failed_backfill_page_loses_nothing_already_emitted(binance: Any) -> None:
    venue = BinanceVenue(binance, count=60, now=9, page_cap=8)
    venue.fail_requests = {5: "down"}  # polls #1 and #2, backfill pages #3 and #4, then #5 fails
    # (a fresh start emits the closed candles of the first reply only: 2..8)
    script = Script(venue, [40])
    candles = await drain(source_for(venue, script, market(), poll_limit=8).candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(2, 40)]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(2, 40)]
    assert len(script.backoffs) == 1
    pages = [int(r["startTime"]) for r in venue.requests if "startTime" in r]
    assert pages == [BinanceVenue.open_time(i) for i in (9, 17, 25, 25)]  # the failed page is retried


async def test_rejected_credentials_stop_with_a_one_line_config_error(binance: Any) -> None:
    venue = BinanceVenue(binance, count=10, now=5)
    venue.failures = ["auth"]
    with pytest.raises(ConfigError) as caught:
        await drain(source_for(venue, Script(venue, []), market()).candles())
    message = str(caught.value)
    assert "\n" not in message
    assert "binance fetch_ohlcv BTC/USDT" in message
    assert "exchanges.binance.api_key" in message
    assert isinstance(caught.value.__cause__, ccxt.AuthenticationError)


async def test_a_symbol_the_venue_rejects_is_a_config_error(binance: Any) -> None:
    venue = BinanceVenue(binance, count=10, now=5)
    venue.failures = ["bad_symbol"]
    with pytest.raises(ConfigError, match=r"binance fetch_ohlcv BTC/USDT: .*check market.symbols"):
        await drain(source_for(venue, Script(venue, []), market()).candles())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"symbols": ["DOGE/USDT"]}, "binance has no market DOGE/USDT"),
        ({"timeframes": ["7m"]}, "binance has no 7m candles; it offers 1s, 1m"),
    ],
)
async def test_config_the_exchange_cannot_serve_fails_before_any_request(
    binance: Any, overrides: dict[str, Any], message: str
) -> None:
    venue = BinanceVenue(binance, count=10, now=5)
    with pytest.raises(ConfigError, match=message):
        await drain(source_for(venue, Script(venue, []), market(**overrides)).candles())
    assert venue.requests == []


async def test_blofin_candles_follow_the_same_rules(blofin: Any) -> None:
    venue = BlofinVenue(blofin, count=30, now=4)
    script = Script(venue, [5, 20])
    cfg = market(source="ccxt:blofin", symbols=["BTC/USDT:USDT"], timeframes=["1d"])
    candles = await drain(source_for(venue, script, cfg, poll_limit=5).candles())
    assert opens(candles) == [BlofinVenue.open_time(i) for i in range(20)]
    recorded_row = BlofinVenue.RECORDED["parsedResponse"][0]
    assert all(list(raw)[1:] == recorded_row[1:] for _, raw in candles)  # final values, never the opening
    backfill = [r for r in venue.requests if "before" in r]
    assert [int(r["limit"]) for r in backfill] == [11]
    assert int(backfill[0]["before"]) == BlofinVenue.open_time(5) - 1


async def test_a_restart_resumes_after_the_last_candle_and_backfills_the_downtime(binance: Any) -> None:
    venue = BinanceVenue(binance, count=60, now=30)
    script = Script(venue, [])
    resume = {"binance:BTC/USDT:1h": BinanceVenue.open_time(11)}
    candles = await drain(source_for(venue, script, market(), poll_limit=5, last_closed=resume).candles())
    assert opens(candles) == [BinanceVenue.open_time(i) for i in range(12, 30)]
    assert [raw for _, raw in candles] == [BinanceVenue.final(i) for i in range(12, 30)]


# --------------------------------------------------------------------------- tickers


def ticker_fields(event: TickerUpdated) -> dict[str, Any]:
    return {"last": event.last, "bid": event.bid, "ask": event.ask, "baseVolume": event.base_volume,
            "quoteVolume": event.quote_volume, "percentage": event.change_pct_24h}


async def test_binance_ticker_becomes_one_event_stamped_with_the_exchange_time(binance: Any) -> None:
    venue = BinanceVenue(binance, count=10, now=5)
    script = Script(venue, [5, 5])  # the same snapshot three times
    envelopes = await drain(source_for(venue, script, market()).tickers())
    parsed = recorded("binance", "fetchTicker")["parsedResponse"]
    assert len(envelopes) == 1
    envelope = envelopes[0]
    assert isinstance(envelope.payload, TickerUpdated)
    assert envelope.ts == parsed["timestamp"]
    assert envelope.key == "binance:BTC/USDT"
    assert ticker_fields(envelope.payload) == {name: parsed[name] for name in ticker_fields(envelope.payload)}
    assert {r["path"] for r in venue.requests} == {"/api/v3/ticker/24hr"}


async def test_several_symbols_use_fetch_tickers_and_stale_tickers_are_dead_lettered(binance: Any) -> None:
    venue = BinanceVenue(binance, count=10, now=5)
    script = Script(venue, [5, 5])
    source = source_for(venue, script, market(symbols=["BTC/USDT", "ETH/USDT"]))
    moves = iter([-HOUR, 1000])

    async def sleep(seconds: float) -> None:
        await script(seconds)
        venue.ticker_shift_ms = next(moves, venue.ticker_shift_ms)

    source.sleep = sleep
    envelopes = await drain(source.tickers())
    parsed_ts = recorded("binance", "fetchTicker")["parsedResponse"]["timestamp"]
    assert [type(e.payload).__name__ for e in envelopes] == ["TickerUpdated", "DeadLettered", "TickerUpdated"]
    assert [e.ts for e in envelopes] == [parsed_ts, parsed_ts, parsed_ts + 1000]
    letter = envelopes[1].payload
    assert isinstance(letter, DeadLettered)
    assert "older than" in letter.reason
    assert orjson.loads(base64.b64decode(letter.value))["timestamp"] == parsed_ts - HOUR
    assert all("symbols" in r for r in venue.requests)  # one request for all symbols


async def test_blofin_ticker_matches_ccxts_recorded_parse(blofin: Any) -> None:
    venue = BlofinVenue(blofin, count=3, now=1)
    cfg = market(source="ccxt:blofin", symbols=["BTC/USDT:USDT"], timeframes=["1d"])
    envelopes = await drain(source_for(venue, Script(venue, []), cfg).tickers())
    parsed = recorded("blofin", "fetchTicker")["parsedResponse"]
    (envelope,) = envelopes
    assert envelope.ts == parsed["timestamp"]
    assert envelope.key == "blofin:BTC/USDT:USDT"
    assert isinstance(envelope.payload, TickerUpdated)
    assert ticker_fields(envelope.payload) == {name: parsed[name] for name in ticker_fields(envelope.payload)}


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(("stream", "module"), [(True, ccxt.pro), (False, ccxt.async_support)])
async def test_create_builds_a_rate_limited_exchange_with_the_credentials(stream: bool, module: Any) -> None:
    credentials = ExchangeConfig(api_key=SecretStr("key-1"), secret=SecretStr("secret-1"))
    source = CcxtMarketSource.create("binance", market(), credentials, stream=stream)
    try:
        assert type(source.exchange) is module.binance
        assert source.exchange.enableRateLimit is True
        assert (source.exchange.apiKey, source.exchange.secret) == ("key-1", "secret-1")
    finally:
        await source.close()


def test_create_rejects_an_unknown_exchange_id() -> None:
    with pytest.raises(ConfigError, match="ccxt has no exchange 'nosuchx'"):
        CcxtMarketSource.create("nosuchx", market())


# --------------------------------------------------------------------------- WebSocket via ccxt.pro


class BinanceStreamServer:
    """A local WebSocket server speaking Binance's market streams: subscribe ack, then events.

    Connection n sends the messages of `scripts[n]`, repeats the last one (Binance pushes updates
    every second or two; here every 20 ms) until the test sets `release`, then closes, which
    ccxt.pro reports as a NetworkError.
    """

    def __init__(self, scripts: list[list[dict[str, Any]]]) -> None:
        self.scripts = scripts
        self.release = asyncio.Event()
        self.connections = 0
        self.subscriptions: list[Any] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        script = self.scripts[self.connections]
        self.connections += 1
        subscribe = await ws.receive_json()
        self.subscriptions.append(subscribe["params"])
        await ws.send_json({"result": None, "id": subscribe["id"]})
        for message in script:
            await ws.send_json(message)

        async def close_on_release() -> None:
            while not self.release.is_set():
                await ws.send_json(script[-1])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 0.02)
            self.release.clear()
            await ws.close()

        closer = asyncio.create_task(close_on_release())
        async for _ in ws:  # keep reading, so pings and the client's close are answered
            pass
        closer.cancel()
        await asyncio.gather(closer, return_exceptions=True)
        return ws


def kline_event(i: int, final: bool) -> dict[str, Any]:
    """Binance's kline stream event for candle `i`, from the same recorded-format row as REST."""
    r = BinanceVenue.kline(i) if final else BinanceVenue.opening(i)
    k = {"t": r[0], "T": r[6], "s": "BTCUSDT", "i": "1h", "f": 100, "L": 200, "o": r[1], "c": r[4],
         "h": r[2], "l": r[3], "v": r[5], "n": r[8], "x": final, "q": r[7], "V": r[9], "Q": r[10], "B": "0"}
    return {"e": "kline", "E": r[0] + HOUR - 1, "s": "BTCUSDT", "k": k}


def mini_ticker_event(shift_ms: int = 0) -> dict[str, Any]:
    """Binance's 24hrMiniTicker stream event (ccxt's default for watchTicker) with the recorded numbers."""
    t = recorded("binance", "fetchTicker")["httpResponse"]
    return {
        "e": "24hrMiniTicker", "E": int(t["closeTime"]) + shift_ms, "s": t["symbol"], "c": t["lastPrice"],
        "o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"],
    }


@contextlib.asynccontextmanager
async def stream_server(
    scripts: list[list[dict[str, Any]]],
) -> AsyncIterator[tuple[BinanceStreamServer, int]]:
    server = BinanceStreamServer(scripts)
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield server, runner.addresses[0][1]
    finally:
        server.release.set()
        await runner.cleanup()


def pro_binance(port: int) -> Any:
    exchange = ccxt.pro.binance({"enableRateLimit": True})
    load_recorded_markets(exchange)
    exchange.urls["api"]["ws"]["spot"] = f"ws://127.0.0.1:{port}/stream/ws"
    return exchange


async def test_websocket_candles_close_reconnect_and_backfill_by_rest() -> None:
    scripts = [
        [kline_event(9, True), kline_event(10, False)],
        [kline_event(25, True), kline_event(26, False)],
    ]
    async with stream_server(scripts) as (server, port):
        venue = BinanceVenue(pro_binance(port), count=40, now=9)
        script = Script(venue, [])
        source = source_for(venue, script, market(), poll_limit=10)
        got: list[Any] = []
        try:
            async with asyncio.timeout(20), contextlib.aclosing(source.candles()) as candles:
                async for item in candles:
                    got.append(item)
                    if item[1].open_time == BinanceVenue.open_time(9):  # closed by the WebSocket
                        venue.now = 25  # the venue moves on while the connection is down
                        server.release.set()
                    if item[1].open_time == BinanceVenue.open_time(25):
                        break
        finally:
            await source.close()
    assert opens(got) == [BinanceVenue.open_time(i) for i in range(26)]
    assert [raw for _, raw in got] == [BinanceVenue.final(i) for i in range(26)]
    assert server.connections == 2
    assert server.subscriptions == [["btcusdt@kline_1h"]] * 2
    assert len(script.backoffs) == 1
    assert script.backoffs[0] <= CAP_S
    # catch-ups at the start and after the reconnect (16..25), then a backfill of 10..15
    assert [r.get("startTime") for r in venue.requests] == [None, None, str(BinanceVenue.open_time(10))]


async def test_websocket_tickers_reconnect_and_skip_repeated_snapshots() -> None:
    scripts = [[mini_ticker_event(), mini_ticker_event()], [mini_ticker_event(), mini_ticker_event(1000)]]
    async with stream_server(scripts) as (server, port):
        venue = BinanceVenue(pro_binance(port), count=3, now=1)
        script = Script(venue, [])
        source = source_for(venue, script, market())
        got: list[Any] = []
        try:
            async with asyncio.timeout(20), contextlib.aclosing(source.tickers()) as tickers:
                async for envelope in tickers:
                    got.append(envelope)
                    server.release.set()  # after the first ticker: drop the connection
                    if len(got) == 2:
                        break
        finally:
            await source.close()
    parsed = recorded("binance", "fetchTicker")["parsedResponse"]
    assert [e.ts for e in got] == [parsed["timestamp"], parsed["timestamp"] + 1000]
    assert all(isinstance(e.payload, TickerUpdated) for e in got)
    first = got[0].payload
    assert (first.last, first.base_volume, first.quote_volume) == (
        parsed["last"], parsed["baseVolume"], parsed["quoteVolume"])
    assert (first.bid, first.ask) == (None, None)  # the mini ticker carries no book
    assert first.change_pct_24h == pytest.approx(parsed["percentage"], abs=1e-3)  # ccxt derives it
    assert server.connections == 2
    assert server.subscriptions == [["btcusdt@miniTicker"]] * 2
    assert len(script.backoffs) == 1
    assert venue.requests == []  # tickers are snapshots: nothing to backfill after a reconnect


def test_fixture_files_stay_small() -> None:
    sizes: Iterator[int] = (path.stat().st_size for path in FIXTURES.glob("*.json"))
    assert max(sizes) < 100_000
