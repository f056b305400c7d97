"""The market_data core: candle streams in, envelopes out, in event-time order, through the gate.

Pure: no Kafka and no clock. Each stream (one file or one live feed per exchange:symbol:timeframe)
passes its candles through its own `CandleQualityGate`; the core merges the streams by event
time (a candle's event time is its close) so that consumers see the market as it unfolded, and
turns every verdict into what must be published:

- an accepted candle: `CandleClosed` on `market.candles` (repairs are logged by the caller);
- a rejected candle: `DeadLettered` on `deadletter` with the reason and the original row;
- a gap: `AlertRaised("data_gap")` on `alerts`.

Its state is the gates' state (the last accepted candle of each stream), so a restarted agent
skips what it already published and never republishes a candle.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.market_data.quality import CandleQualityGate, RawCandle
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, candle_key, timeframe_ms
from topics.system import AlertRaised, DeadLettered

SOURCE = "market_data"


@dataclass(frozen=True)
class Stream:
    """Where candles come from (`origin`, e.g. a file name) and which stream they are."""

    exchange: str
    symbol: str
    timeframe: str
    origin: str

    @property
    def key(self) -> str:
        return candle_key(self.exchange, self.symbol, self.timeframe)


@dataclass
class Published:
    """What the core emitted, counted by kind, for progress views and summaries."""

    rows: int = 0  # raw candles handled
    candles: int = 0
    dead_lettered: int = 0
    gaps: int = 0
    repairs: list[str] = field(default_factory=list)


class MarketDataCore:
    """Merges candle streams by event time and applies the quality policy to each."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.gates: dict[str, CandleQualityGate] = {
            key: CandleQualityGate.from_state(gate) for key, gate in (state or {}).items()
        }
        # After a restart the sources start again from their beginning: skip what was handled.
        self._resume_after = {
            key: gate.last.open_time for key, gate in self.gates.items() if gate.last is not None
        }
        self.published = Published()

    def state(self) -> dict[str, Any]:
        """JSON-ready: the last accepted candle of every stream."""
        return {key: gate.to_state() for key, gate in self.gates.items()}

    def run(self, streams: Iterable[tuple[Stream, Iterable[RawCandle]]]) -> Iterator[Envelope[Event]]:
        """Every envelope to publish, ordered by event time across streams (stable per stream)."""
        step_of = {}
        iterators = []
        for index, (stream, candles) in enumerate(streams):
            step_of[stream.key] = timeframe_ms(stream.timeframe)
            iterators.append(self._timed(index, stream, candles, step_of[stream.key]))
        for _, _, _, stream, offset, raw in heapq.merge(*iterators):
            yield from self.handle(stream, raw, offset)

    def handle(self, stream: Stream, raw: RawCandle, offset: int = 0) -> list[Envelope[Event]]:
        """The envelopes for one raw candle of `stream` (also used by live sources)."""
        self.published.rows += 1
        gate = self.gates.get(stream.key)
        if gate is None:
            gate = self.gates[stream.key] = CandleQualityGate(stream.timeframe)
        resume_after = self._resume_after.get(stream.key)
        if resume_after is not None:
            if raw.open_time <= resume_after:
                return []  # handled before the restart
            del self._resume_after[stream.key]
        verdict = gate.check(raw)
        close_time = raw.open_time + timeframe_ms(stream.timeframe)
        out: list[Envelope[Event]] = []
        self.published.repairs.extend(f"{stream.key}: {reason}" for reason in verdict.repairs)
        if verdict.missing_before:
            self.published.gaps += 1
            alert = AlertRaised(
                name="data_gap", severity="warning", symbol=stream.symbol,
                message=f"{verdict.missing_before} {stream.timeframe} candle(s) missing in {stream.key} "
                f"before {raw.open_time} ({stream.origin})",
                details={"missing": verdict.missing_before, "before_open_time": raw.open_time,
                         "stream": stream.key},
            )
            out.append(Envelope.create(alert, key=stream.key, ts=close_time, source=SOURCE,
                                       discriminator="gap"))
        if verdict.rejected is not None:
            self.published.dead_lettered += 1
            out.append(self._dead_letter(stream, raw, offset, verdict.rejected, close_time))
        if verdict.candle is not None:
            self.published.candles += 1
            c = verdict.candle
            candle = CandleClosed(
                exchange=stream.exchange, symbol=stream.symbol, timeframe=stream.timeframe,
                open_time=c.open_time, close_time=close_time, open=c.open, high=c.high, low=c.low,
                close=c.close, volume=c.volume,
            )
            out.append(Envelope.create(candle, key=stream.key, ts=close_time, source=SOURCE))
        return out

    @staticmethod
    def _timed(
        index: int, stream: Stream, candles: Iterable[RawCandle], step: int
    ) -> Iterator[tuple[int, int, int, Stream, int, RawCandle]]:
        for offset, raw in enumerate(candles):
            yield raw.open_time + step, index, offset, stream, offset, raw

    @staticmethod
    def _dead_letter(stream: Stream, raw: RawCandle, offset: int, reason: str, ts: int) -> Envelope[Event]:
        row = orjson.dumps(dict(zip(RawCandle._fields, raw, strict=True)), option=orjson.OPT_SERIALIZE_NUMPY)
        letter = DeadLettered(
            agent=SOURCE, reason=reason, error_type="invalid", topic=f"source:{stream.origin}",
            partition=0, offset=offset, key=base64.b64encode(stream.key.encode()).decode(),
            value=base64.b64encode(row).decode(), timestamp=max(ts, 0),
        )
        return Envelope.create(letter, key=f"source:{stream.origin}", ts=max(ts, 0), source=SOURCE,
                               discriminator=str(offset))
