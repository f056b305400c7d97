"""Live market data from any ccxt exchange: closed candles and tickers, over REST or WebSocket.

`CcxtMarketSource.candles()` yields `(Stream, RawCandle)` pairs of closed candles, ready for
`MarketDataCore.handle` (which applies the quality gate and makes the `CandleClosed`, whose event
time is the candle's close). `tickers()` yields `TickerUpdated` envelopes stamped with the
exchange's ticker timestamp, or `DeadLettered` envelopes for tickers that cannot be events.

The closed-candle rule (event time, never the wall clock): the newest row an exchange returns
for a stream is the candle in progress. A candle is closed once a later candle exists: in the
same REST reply (REST replies are snapshots, so a candle is taken only from a reply that also
holds a later one), or on the WebSocket (whose updates arrive in order, so the last values it
sent before the next candle opened are final). The newest row is never emitted; an exchange
that only ever returns closed candles is still correct, its candles just come out one poll
later. After a WebSocket break the open candle is fetched again by REST, since its last updates
may have been lost.

Per stream (exchange, symbol, timeframe) a `CandleCursor` remembers the open_time of the last
emitted candle: older or repeated rows are ignored, so nothing is emitted twice or out of
order. When the next expected candle is missing (the poll returned only newer ones, the
WebSocket skipped, or the connection was down), the gap is backfilled with
`fetch_ohlcv(since=first missing open_time)` pages, at most `market.backfill_limit` candles per
round and oldest first, before anything newer is emitted. A gap the exchange itself has no data
for (a backfill page with no candle inside the gap) is logged and skipped, so the stream never
stalls; the quality gate then reports it as a data gap.

Errors are translated at one boundary (`translate_error`): ccxt network errors become
`RetriableError` and are retried with capped, jittered exponential backoff (a reconnect on
WebSocket, followed by a REST catch-up of the gap); bad credentials, unknown symbols and
unsupported features become `ConfigError` with a one-line message naming exchange and symbol.
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ccxt
import ccxt.async_support
import ccxt.pro
import orjson
import structlog

from agents.market_data.core import SOURCE, Stream
from agents.market_data.quality import RawCandle
from config.errors import ConfigError, CryptiqError, RetriableError
from config.settings import ExchangeConfig, MarketConfig, reveal
from topics.envelope import Envelope
from topics.events import Event
from topics.market import TickerUpdated, instrument_key, timeframe_ms
from topics.system import DeadLettered

log = structlog.get_logger("cryptiq.market_data.ccxt")

POLL_LIMIT = 5  # candles per regular poll: the one in progress plus a few closed ones
BACKOFF_BASE_S = 1.0  # first retry waits 0.5..1 s, then doubles up to market.reconnect_max_backoff_s
QUEUE_SIZE = 1000  # WebSocket events buffered between the stream tasks and the consumer

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


# --------------------------------------------------------------------------- pure logic


@dataclass(frozen=True)
class Gap:
    """Candles missing from a stream: open times `since` (inclusive) to `until` (exclusive)."""

    since: int
    until: int

    def missing(self, step_ms: int) -> int:
        return (self.until - self.since) // step_ms


@dataclass(frozen=True)
class Advance:
    """What one batch of rows closed: candles to emit in order, and a gap that blocks the rest."""

    closed: tuple[RawCandle, ...]
    gap: Gap | None = None


@dataclass
class CandleCursor:
    """The closed-candle, no-duplicate, no-gap logic of one candle stream. Pure: no I/O, no clock.

    `last_closed` is the open_time of the last emitted candle; `pending` is the newest row seen,
    still in progress, and `pending_live` says it came from a WebSocket stream.
    """

    step_ms: int
    last_closed: int | None = None
    pending: RawCandle | None = None
    pending_live: bool = False

    def advance(self, rows: Iterable[Sequence[Any]], *, live: bool = False) -> Advance:
        """Take ccxt OHLCV rows (any order, repeats allowed); return the newly closed candles.

        Closed = older than the newest row seen. Emitted candles are contiguous from the last
        one; at the first missing candle the result stops and names the gap, which the caller
        backfills (then calls again) or gives up on with `skip`.

        REST rows (`live=False`) are snapshots: a candle is taken only from a reply that also
        holds a later one, so an in-progress copy from an earlier reply is never emitted. A
        WebSocket (`live=True`) delivers every update in order, so the last values it sent for a
        candle before a later candle appeared are final, even when they came in an earlier batch.
        """
        by_time: dict[int, RawCandle] = {}
        if self.pending is not None and self.pending_live:
            by_time[self.pending.open_time] = self.pending
        for row in rows:  # later rows win: a fresher copy of the same candle
            candle = to_raw_candle(row)
            by_time[candle.open_time] = candle
        fresh = sorted(t for t in by_time if self.last_closed is None or t > self.last_closed)
        if not fresh:
            return Advance(())
        newest = by_time[fresh[-1]]
        if newest is not self.pending:
            self.pending, self.pending_live = newest, live
        closed: list[RawCandle] = []
        expected = None if self.last_closed is None else self.last_closed + self.step_ms
        for open_time in fresh[:-1]:
            if expected is not None and open_time > expected:
                return Advance(tuple(closed), Gap(expected, open_time))
            closed.append(by_time[open_time])
            self.last_closed = open_time
            expected = open_time + self.step_ms
        if expected is not None and fresh[-1] > expected:
            return Advance(tuple(closed), Gap(expected, fresh[-1]))
        return Advance(tuple(closed))

    def interrupted(self) -> None:
        """The WebSocket broke: updates of the open candle may be lost, so it must come by REST."""
        self.pending_live = False

    def skip(self, gap: Gap) -> None:
        """Give up on `gap` (the exchange has no data for it): continue after it."""
        if self.last_closed is None or gap.until - self.step_ms > self.last_closed:
            self.last_closed = gap.until - self.step_ms


def to_raw_candle(row: Sequence[Any]) -> RawCandle:
    """A ccxt OHLCV row `[open_time, open, high, low, close, volume]` as a RawCandle (None -> NaN)."""
    values = [math.nan if value is None else float(value) for value in row[1:6]]
    values += [math.nan] * (5 - len(values))
    return RawCandle(int(row[0]), *values)


def backoff_delay(attempt: int, cap_s: float, rng: random.Random, base_s: float = BACKOFF_BASE_S) -> float:
    """Capped exponential backoff with equal jitter: a delay in [d/2, d], d = min(cap, base * 2**attempt).

    The jitter spreads reconnects of many streams; the floor d/2 keeps the backoff real.
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rng.random() * ceiling / 2


def translate_error(exchange_id: str, action: str, symbol: str | None, exc: ccxt.BaseError) -> CryptiqError:
    """The one place where ccxt errors become CryptIQ errors: retry, or stop with a clear line."""
    where = f"{exchange_id} {action}" + (f" {symbol}" if symbol else "")
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    if isinstance(exc, ccxt.AuthenticationError):
        return ConfigError(
            f"{where}: {exchange_id} rejected the credentials ({detail}): "
            f"check exchanges.{exchange_id}.api_key, secret and password"
        )
    if isinstance(exc, ccxt.BadSymbol):
        return ConfigError(f"{where}: {exchange_id} has no market {symbol} ({detail}): check market.symbols")
    if isinstance(exc, ccxt.NotSupported):
        return ConfigError(f"{where} is not supported by {exchange_id} ({detail}): check market.source")
    if isinstance(exc, ccxt.OperationFailed):  # network errors, timeouts, rate limits, garbled replies
        return RetriableError(f"{where} failed ({type(exc).__name__}: {detail}); retrying")
    return CryptiqError(f"{where} failed ({type(exc).__name__}: {detail}): check the exchange's status")


def ticker_event(exchange_id: str, symbol: str, ticker: Mapping[str, Any]) -> tuple[int, TickerUpdated]:
    """A ccxt unified ticker as (event time, TickerUpdated); ValueError says why it cannot be one."""
    timestamp = ticker.get("timestamp")
    if timestamp is None:
        raise ValueError(f"ticker of {symbol} has no timestamp, so it has no event time")
    last = ticker.get("last") if ticker.get("last") is not None else ticker.get("close")
    if last is None or not float(last) > 0:
        raise ValueError(f"ticker of {symbol} at {timestamp} has no positive last price ({last!r})")
    event = TickerUpdated(
        exchange=exchange_id,
        symbol=symbol,
        last=float(last),
        bid=_positive(ticker.get("bid")),  # a zero bid or ask means an empty side of the book
        ask=_positive(ticker.get("ask")),
        base_volume=_number(ticker.get("baseVolume")),
        quote_volume=_number(ticker.get("quoteVolume")),
        change_pct_24h=_number(ticker.get("percentage")),
    )
    return int(timestamp), event


def _positive(value: Any) -> float | None:
    return float(value) if value is not None and float(value) > 0 else None


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


Candle = tuple[Stream, RawCandle]
# One WebSocket stream's loop: runs forever, handing what it gets to the `put` it is given.
Pump = Callable[[Callable[[T], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class _Failure:
    error: Exception


# --------------------------------------------------------------------------- the source


@dataclass
class CcxtMarketSource:
    """Closed candles and tickers of `market.symbols` x `market.timeframes` from one ccxt exchange.

    Build it with `create` (a real exchange from config) or hand it a ready ccxt async exchange
    object. `stream=True` uses ccxt.pro WebSockets where the exchange has them (`watchOHLCV`,
    `watchTicker`) and REST polling elsewhere. `sleep` and `rng` drive backoff and polling
    cadence; tests inject instant ones. `last_closed` ({candle key: open_time}) resumes streams
    after a restart, so the downtime is backfilled; `positions()` is the current value.
    """

    exchange: Any
    market: MarketConfig
    stream: bool = True
    sleep: Sleep = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    poll_limit: int = POLL_LIMIT
    last_closed: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.exchange_id: str = self.exchange.id
        origin = f"ccxt:{self.exchange_id}"
        self.streams = [
            Stream(self.exchange_id, symbol, timeframe, origin)
            for symbol in self.market.symbols
            for timeframe in self.market.timeframes
        ]
        self._cursors = {
            stream: CandleCursor(timeframe_ms(stream.timeframe), self.last_closed.get(stream.key))
            for stream in self.streams
        }
        self._ticker_ts: dict[str, int] = {}
        self._ticker_rejects = 0
        self._opened = False

    @classmethod
    def create(
        cls,
        exchange_id: str,
        market: MarketConfig,
        credentials: ExchangeConfig | None = None,
        *,
        stream: bool = True,
        **options: Any,
    ) -> CcxtMarketSource:
        """A source on a new ccxt exchange (ccxt.pro when streaming) with ccxt's rate limiter on."""
        if exchange_id not in ccxt.async_support.exchanges:
            raise ConfigError(
                f"market.source = ccxt:{exchange_id}: ccxt has no exchange {exchange_id!r}; "
                "use a ccxt id such as binance, blofin or cryptocom"
            )
        module: Any = ccxt.pro if stream and exchange_id in ccxt.pro.exchanges else ccxt.async_support
        config: dict[str, Any] = {"enableRateLimit": True}
        if credentials is not None:
            secrets = {"apiKey": credentials.api_key, "secret": credentials.secret,
                       "password": credentials.password}
            config |= {name: reveal(value) for name, value in secrets.items() if value is not None}
        exchange = getattr(module, exchange_id)(config)
        if credentials is not None and credentials.sandbox:
            try:
                exchange.set_sandbox_mode(True)
            except ccxt.BaseError as exc:
                raise translate_error(exchange_id, "sandbox mode", None, exc) from exc
        return cls(exchange, market, stream=stream, **options)

    async def open(self) -> None:
        """Load the exchange's markets and check the configured symbols and timeframes."""
        if self._opened:
            return
        await self._call("load_markets", None, self.exchange.load_markets())
        markets = self.exchange.markets or {}
        for symbol in self.market.symbols:
            if symbol not in markets:
                raise ConfigError(
                    f"market.symbols: {self.exchange_id} has no market {symbol}; "
                    "use ccxt unified symbols such as BTC/USDT (spot) or BTC/USDT:USDT (perpetual)"
                )
        offered = self.exchange.timeframes or {}
        for timeframe in self.market.timeframes:
            if offered and timeframe not in offered:
                raise ConfigError(
                    f"market.timeframes: {self.exchange_id} has no {timeframe} candles; "
                    f"it offers {', '.join(offered)}"
                )
        if not self.exchange.has.get("fetchOHLCV"):
            raise ConfigError(f"market.source: {self.exchange_id} offers no OHLCV candles through ccxt")
        self._opened = True

    async def close(self) -> None:
        """Close the exchange's HTTP and WebSocket connections."""
        await self.exchange.close()

    def positions(self) -> dict[str, int]:
        """{candle key: open_time of the last closed candle yielded}; pass it back as `last_closed`."""
        return {
            stream.key: cursor.last_closed
            for stream, cursor in self._cursors.items()
            if cursor.last_closed is not None
        }

    # ----------------------------------------------------------------- candles

    async def candles(self) -> AsyncIterator[Candle]:
        """Closed candles of every configured stream, forever; per stream in open_time order."""
        await self.open()
        if self.stream and self.exchange.has.get("watchOHLCV"):
            async for item in self._merge([self._watch_candles_into(s) for s in self.streams]):
                yield item
            return
        while True:
            for stream in self.streams:
                attempt = 0
                while True:
                    try:
                        async for candle in self._poll(stream):
                            yield candle
                        break
                    except RetriableError as exc:  # the cursor keeps what was yielded; retry the rest
                        await self._back_off(attempt, exc, "fetch_ohlcv", stream.symbol)
                        attempt += 1
            await self.sleep(self.market.poll_interval_s)

    async def _poll(self, stream: Stream) -> AsyncIterator[Candle]:
        """One REST round of a stream: the latest candles, plus a backfill of any gap."""
        rows = await self._call(
            "fetch_ohlcv", stream.symbol,
            self.exchange.fetch_ohlcv(stream.symbol, stream.timeframe, None, self.poll_limit),
        )
        async for candle in self._settle(stream, rows):
            yield candle

    def _watch_candles_into(self, stream: Stream) -> Pump[Candle]:
        async def pump(put: Callable[[Candle], Awaitable[None]]) -> None:
            attempt, caught_up = 0, False
            while True:
                try:
                    if not caught_up:  # at start and after every reconnect: close the gap by REST
                        self._cursors[stream].interrupted()
                        async for candle in self._poll(stream):
                            await put(candle)
                        caught_up = True
                    rows = await self._call(
                        "watch_ohlcv", stream.symbol,
                        self.exchange.watch_ohlcv(stream.symbol, stream.timeframe),
                    )
                    attempt = 0
                    async for candle in self._settle(stream, rows, live=True):
                        await put(candle)
                except RetriableError as exc:
                    await self._back_off(attempt, exc, "watch_ohlcv", stream.symbol)
                    attempt, caught_up = attempt + 1, False

        return pump

    async def _settle(
        self, stream: Stream, rows: Sequence[Sequence[Any]], *, live: bool = False
    ) -> AsyncIterator[Candle]:
        """Apply the cursor to `rows` (`live`: from the WebSocket), backfilling gaps by REST; yield
        the closed candles in order.

        Candles are yielded as soon as the cursor has moved past them, so an error in a later
        backfill page loses nothing: the retry continues from the cursor.
        """
        cursor = self._cursors[stream]
        rows = list(rows)
        step = cursor.advance(rows, live=live)
        for raw in step.closed:
            yield stream, raw
        budget = self.market.backfill_limit
        while step.gap is not None:
            gap = step.gap
            where = {"exchange": self.exchange_id, "symbol": stream.symbol, "timeframe": stream.timeframe,
                     "since": gap.since, "until": gap.until}
            if budget <= 0:  # the next round (poll or WebSocket update) goes on from the cursor
                log.warning("candle_backfill_deferred", backfill_limit=self.market.backfill_limit, **where)
                return
            count = min(budget, gap.missing(cursor.step_ms))
            budget -= count
            page = await self._call(
                "fetch_ohlcv", stream.symbol,
                self.exchange.fetch_ohlcv(stream.symbol, stream.timeframe, gap.since, count),
            )
            if any(gap.since <= row[0] < gap.until for row in page):
                log.info("candle_gap_backfilled", rows=len(page), **where)
                rows = [*page, *rows]
            else:
                log.warning("candle_gap_unfilled", missing=gap.missing(cursor.step_ms), **where)
                cursor.skip(gap)
            step = cursor.advance(rows, live=live)
            for raw in step.closed:
                yield stream, raw

    # ----------------------------------------------------------------- tickers

    async def tickers(self) -> AsyncIterator[Envelope[Event]]:
        """`TickerUpdated` envelopes of every symbol, each only when its timestamp moved on, forever.

        A ticker that cannot be an event (no timestamp, no price, older than the last one) comes
        out as a `DeadLettered` envelope with the reason.
        """
        await self.open()
        symbols = list(self.market.symbols)
        if self.stream and self.exchange.has.get("watchTicker"):
            async for item in self._merge([self._watch_ticker_into(s) for s in symbols]):
                yield item
            return
        while True:
            attempt = 0
            while True:
                try:
                    batch = await self._fetch_tickers(symbols)
                    break
                except RetriableError as exc:
                    await self._back_off(attempt, exc, "fetch_tickers", None)
                    attempt += 1
            for symbol in symbols:
                if symbol in batch:
                    for envelope in self._ticker_envelopes(symbol, batch[symbol]):
                        yield envelope
            await self.sleep(self.market.poll_interval_s)

    async def _fetch_tickers(self, symbols: list[str]) -> dict[str, Any]:
        if len(symbols) > 1 and self.exchange.has.get("fetchTickers"):
            return dict(await self._call("fetch_tickers", None, self.exchange.fetch_tickers(symbols)))
        return {s: await self._call("fetch_ticker", s, self.exchange.fetch_ticker(s)) for s in symbols}

    def _watch_ticker_into(self, symbol: str) -> Pump[Envelope[Event]]:
        async def pump(put: Callable[[Envelope[Event]], Awaitable[None]]) -> None:
            attempt = 0
            while True:
                try:
                    ticker = await self._call("watch_ticker", symbol, self.exchange.watch_ticker(symbol))
                except RetriableError as exc:
                    await self._back_off(attempt, exc, "watch_ticker", symbol)
                    attempt += 1
                    continue
                attempt = 0
                for envelope in self._ticker_envelopes(symbol, ticker):
                    await put(envelope)

        return pump

    def _ticker_envelopes(self, symbol: str, ticker: Mapping[str, Any]) -> list[Envelope[Event]]:
        key = instrument_key(self.exchange_id, symbol)
        last = self._ticker_ts.get(symbol)
        try:
            ts, event = ticker_event(self.exchange_id, symbol, ticker)
        except ValueError as exc:
            return [self._dead_letter(key, ticker, str(exc), last or 0)]
        if last is not None and ts < last:  # a lagging server answered: a stream cannot go back
            return [self._dead_letter(key, ticker, f"ticker at {ts} is older than the one at {last}", last)]
        if last is not None and ts == last:
            return []  # the same snapshot polled again: nothing happened
        self._ticker_ts[symbol] = ts
        return [Envelope.create(event, key=key, ts=ts, source=SOURCE)]

    def _dead_letter(self, key: str, ticker: Mapping[str, Any], reason: str, ts: int) -> Envelope[Event]:
        self._ticker_rejects += 1
        value = orjson.dumps(dict(ticker), default=str)
        letter = DeadLettered(
            agent=SOURCE, reason=reason, error_type="invalid", topic=f"source:ccxt:{self.exchange_id}",
            partition=0, offset=self._ticker_rejects, key=base64.b64encode(key.encode()).decode(),
            value=base64.b64encode(value).decode(), timestamp=ts,
        )
        return Envelope.create(letter, key=f"source:ccxt:{self.exchange_id}", ts=ts, source=SOURCE,
                               discriminator=f"ticker-{self._ticker_rejects}")

    # ----------------------------------------------------------------- plumbing

    async def _call(self, action: str, symbol: str | None, call: Awaitable[T]) -> T:
        """Await one ccxt call; its errors leave here translated (the single ccxt error boundary)."""
        try:
            return await call
        except ccxt.BaseError as exc:
            raise translate_error(self.exchange_id, action, symbol, exc) from exc

    async def _back_off(self, attempt: int, exc: RetriableError, action: str, symbol: str | None) -> None:
        delay = backoff_delay(attempt, self.market.reconnect_max_backoff_s, self.rng)
        log.warning("market_source_retrying", exchange=self.exchange_id, action=action, symbol=symbol,
                    attempt=attempt + 1, delay_s=round(delay, 3), error=str(exc))
        await self.sleep(delay)

    async def _merge(self, pumps: list[Pump[T]]) -> AsyncIterator[T]:
        """Run one task per WebSocket stream and yield their items as they come.

        A task's error is handed over and raised here, in the consumer; leaving the iterator
        cancels and awaits every task, so none outlives it.
        """
        queue: asyncio.Queue[T | _Failure] = asyncio.Queue(QUEUE_SIZE)

        async def run(pump: Pump[T]) -> None:
            try:
                await pump(queue.put)
            except Exception as exc:  # not swallowed: re-raised by the consumer below
                await queue.put(_Failure(exc))

        name = f"ccxt-{self.exchange_id}"
        tasks = [asyncio.create_task(run(pump), name=f"{name}-{n}") for n, pump in enumerate(pumps)]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
