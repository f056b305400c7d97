"""The market_data agent: publishes closed candles from candle files (or a live source) to Kafka.

A source agent: it consumes no topic, so it runs in `agents.runtime.SourceHost`, which paces and
publishes what `envelopes()` yields. With `market.source: files` it replays the candle files
imported with `cryptiq data import` (under `$CRYPTIQ_HOME/data`), or the bundled real dataset when
nothing was imported, merged by event time through the data-quality gate.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import orjson

from agents.base import AgentDeps
from agents.market_data.ccxt_source import CcxtMarketSource, backoff_delay
from agents.market_data.core import MarketDataCore, Stream
from agents.market_data.files import CandleSource, bundled_candles, read_raw_candles
from agents.market_data.quality import RawCandle
from config import Settings
from config.errors import ConfigError, RetriableError
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import ALERTS, DEADLETTER, MARKET_CANDLES, MARKET_TICKERS, TopicSpec

STATE_KEY = "gates"


def store_dir(settings: Settings) -> Path:
    """Where `cryptiq data import` keeps normalised candle files."""
    return settings.home / "data"


def stored_candles(settings: Settings) -> list[CandleSource]:
    """Imported candle files: `data/<exchange>/<BASE-QUOTE>/<timeframe>.parquet`."""
    sources = []
    for path in sorted(store_dir(settings).glob("*/*/*.parquet")):
        exchange, pair, timeframe = path.parent.parent.name, path.parent.name, path.stem
        sources.append(CandleSource(path, exchange, pair.replace("-", "/"), timeframe))
    return sources


def file_sources(settings: Settings) -> list[CandleSource]:
    """What the files source replays: imported files, else the bundled dataset; filtered by config."""
    sources = stored_candles(settings) or bundled_candles()
    market = settings.market
    if market.symbols:
        sources = [s for s in sources if s.symbol in market.symbols]
    if market.timeframes:
        sources = [s for s in sources if s.timeframe in market.timeframes]
    return sources


class MarketDataAgent:
    """Replays candle files in event-time order through the quality gate (files source)."""

    name: ClassVar[str] = "market_data"
    consumes: ClassVar[tuple[TopicSpec, ...]] = ()
    produces: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES, DEADLETTER, ALERTS)

    def __init__(self, deps: AgentDeps, sources: Sequence[CandleSource]) -> None:
        self.deps = deps
        self.sources = list(sources)
        self.core = MarketDataCore()
        self._cache: dict[Path, list[RawCandle]] = {}

    @classmethod
    def from_settings(cls, deps: AgentDeps, settings: Settings) -> MarketDataAgent | LiveMarketDataAgent:
        """The agent for `market.source`: files (imported, else bundled) or a live ccxt exchange."""
        if settings.market.source.startswith("ccxt:"):
            return LiveMarketDataAgent.from_settings(deps, settings)
        sources = file_sources(settings)
        if not sources:
            raise ConfigError(
                f"no candle files match market.symbols={settings.market.symbols} and "
                f"market.timeframes={settings.market.timeframes}: import some with `cryptiq data import` "
                "or change the config"
            )
        return cls(deps, sources)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        self.core = MarketDataCore(orjson.loads(saved) if saved else None)

    async def checkpoint(self) -> None:
        """Save how far each stream got, so a restart publishes nothing twice."""
        await self.deps.store.save(STATE_KEY, orjson.dumps(self.core.state()))

    def rows_done(self) -> int:
        """Candle rows handled so far (accepted, repaired or rejected)."""
        return self.core.published.rows

    def total(self) -> int:
        """How many candle rows the sources hold (for progress bars)."""
        return sum(len(self._rows(source)) for source in self.sources)

    async def envelopes(self) -> AsyncIterator[Envelope[Event]]:
        streams = [(self._stream(source), self._rows(source)) for source in self.sources]
        for i, env in enumerate(self.core.run(streams)):
            yield env
            if i % 2000 == 0:
                await asyncio.sleep(0)  # let the host's other tasks (heartbeats, signals) run

    def _rows(self, source: CandleSource) -> list[RawCandle]:
        cached = self._cache
        if source.path not in cached:
            frame = read_raw_candles(source.path, symbol=source.symbol)
            # Files: rows out of order are repaired by a stable sort (the gate would reject them).
            order = np.argsort(frame["open_time"].to_numpy(), kind="stable")
            unsorted = int((np.diff(frame["open_time"].to_numpy()) < 0).sum())
            if unsorted:
                self.deps.log.info("rows out of order sorted", source=str(source.path), rows=unsorted)
            frame = frame.iloc[order]
            columns = [frame[name].to_numpy() for name in RawCandle._fields]
            cached[source.path] = [
                RawCandle(int(t), float(o), float(h), float(lo), float(c), float(v))
                for t, o, h, lo, c, v in zip(*columns, strict=True)
            ]
        return cached[source.path]

    @staticmethod
    def _stream(source: CandleSource) -> Stream:
        return Stream(source.exchange, source.symbol, source.timeframe, source.path.name)


class LiveMarketDataAgent:
    """Publishes closed candles and tickers from a live ccxt exchange (`market.source: ccxt:<id>`).

    Candles go through the same core and quality gate as files; on restart each stream resumes
    after its last published candle and the downtime is backfilled by the source.
    """

    name: ClassVar[str] = "market_data"
    produces: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES, MARKET_TICKERS, DEADLETTER, ALERTS)

    def __init__(self, deps: AgentDeps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self.core = MarketDataCore()
        self.source: CcxtMarketSource | None = None

    @classmethod
    def from_settings(cls, deps: AgentDeps, settings: Settings) -> LiveMarketDataAgent:
        market = settings.market
        if not market.symbols:
            raise ConfigError(f"market.source = {market.source} needs market.symbols, e.g. BTC/USDT,ETH/USDT")
        if not market.timeframes:
            one_minute = market.model_copy(update={"timeframes": ["1m"]})
            settings = settings.model_copy(update={"market": one_minute})
        return cls(deps, settings)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        self.core = MarketDataCore(orjson.loads(saved) if saved else None)
        exchange_id = self.settings.market.source.removeprefix("ccxt:")
        resume = {key: gate["last"][0] for key, gate in self.core.state().items() if gate.get("last")}
        self.source = CcxtMarketSource.create(
            exchange_id, self.settings.market, self.settings.exchanges.get(exchange_id), last_closed=resume,
        )

    async def checkpoint(self) -> None:
        await self.deps.store.save(STATE_KEY, orjson.dumps(self.core.state()))

    def rows_done(self) -> int:
        return self.core.published.rows

    async def envelopes(self) -> AsyncIterator[Envelope[Event]]:
        assert self.source is not None
        source = self.source
        try:
            await self._open(source)
            async for item in merge(self._candles(source), source.tickers()):
                yield item
        finally:
            await source.close()

    async def _open(self, source: CcxtMarketSource) -> None:
        """Load the exchange's markets, retrying while the exchange cannot be reached."""
        rng = random.Random(0)
        attempt = 0
        while True:
            try:
                await source.open()
                return
            except RetriableError as exc:
                cap = self.settings.market.reconnect_max_backoff_s
                delay = backoff_delay(attempt, cap, rng)
                self.deps.log.warning("exchange unreachable; retrying", error=str(exc), delay_s=delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def _candles(self, source: CcxtMarketSource) -> AsyncIterator[Envelope[Event]]:
        async for stream, raw in source.candles():
            for env in self.core.handle(stream, raw):
                yield env


async def merge(*iterators: AsyncIterator[Envelope[Event]]) -> AsyncIterator[Envelope[Event]]:
    """Items of several async iterators as they come; an error in one is raised here."""
    queue: asyncio.Queue[Envelope[Event] | BaseException] = asyncio.Queue(1000)

    async def pump(iterator: AsyncIterator[Envelope[Event]]) -> None:
        try:
            async for item in iterator:
                await queue.put(item)
        except Exception as exc:
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(iterator)) for iterator in iterators]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
