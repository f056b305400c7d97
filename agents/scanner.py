"""The scanner agent: ranks the universe and flags price and volume spikes as candles close.

Per stream (exchange:symbol:timeframe) it keeps, incrementally: Bollinger bands of the close, the
z-score of the volume, a fast and a slow SMA of the close, the closes needed for each % change
window and the quote volume (volume x close) over the volume window. On each candle it may
raise alerts on `alerts`, on the transition into a state (not while it lasts) and at most once
per `scanner.alert_cooldown` candles per signal and stream:

- `scanner.bb_breakout_up` / `scanner.bb_breakout_down`: the close leaves its Bollinger band;
- `scanner.volume_spike`: the volume's z-score reaches `scanner.volume_z_threshold`;
- `ma_cross_up` / `ma_cross_down` (the fast SMA crosses the slow one) is a trend change, not a
  spike: it shows in the snapshot's `signals`, without an alert.

Every `scanner.snapshot_every` of event time (per timeframe) it publishes a `MarketScan` on
`market.scan`: the filtered universe ranked by `scanner.rank_by`, top `scanner.top` rows. All
time comes from candles, so a replay gives the same alerts and snapshots.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from agents.base import AgentDeps
from config.settings import ScannerConfig
from indicators.streaming import SMA, BollingerBands, ZScore
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, MarketScan, ScanRow, timeframe_ms
from topics.registry import ALERTS, MARKET_CANDLES, MARKET_SCAN, TopicSpec
from topics.system import AlertRaised

STATE_KEY = "streams"


@dataclass
class StreamState:
    """Everything the scanner remembers about one stream."""

    exchange: str
    symbol: str
    timeframe: str
    bands: BollingerBands
    volume_z: ZScore
    fast: SMA
    slow: SMA
    closes: deque[float]
    quote_volumes: deque[float]
    last_open_time: int = -1
    above_fast: bool | None = None
    band_side: int = 0  # -1 below the band, 0 inside, +1 above
    volume_spiking: bool = False
    row: dict[str, Any] = field(default_factory=dict)
    last_alert: dict[str, int] = field(default_factory=dict)  # signal -> open_time of its last alert

    def to_state(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe,
            "bands": self.bands.to_state(), "volume_z": self.volume_z.to_state(),
            "fast": self.fast.to_state(), "slow": self.slow.to_state(), "closes": list(self.closes),
            "quote_volumes": list(self.quote_volumes), "closes_max": self.closes.maxlen,
            "volumes_max": self.quote_volumes.maxlen, "last_open_time": self.last_open_time,
            "above_fast": self.above_fast, "band_side": self.band_side,
            "volume_spiking": self.volume_spiking, "row": self.row, "last_alert": self.last_alert,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> StreamState:
        return cls(
            data["exchange"], data["symbol"], data["timeframe"], BollingerBands.from_state(data["bands"]),
            ZScore.from_state(data["volume_z"]), SMA.from_state(data["fast"]), SMA.from_state(data["slow"]),
            deque(data["closes"], maxlen=data["closes_max"]),
            deque(data["quote_volumes"], maxlen=data["volumes_max"]), data["last_open_time"],
            data["above_fast"], data["band_side"], data["volume_spiking"], data["row"], data["last_alert"],
        )


class ScannerCore:
    """Pure: candles in, alerts and snapshots out, time from the candles."""

    def __init__(self, config: ScannerConfig, state: dict[str, Any] | None = None) -> None:
        self.config = config
        self.streams: dict[str, StreamState] = {
            key: StreamState.from_state(value) for key, value in (state or {}).get("streams", {}).items()
        }
        self.next_snapshot: dict[str, int] = dict((state or {}).get("next_snapshot", {}))
        self._every = timeframe_ms(config.snapshot_every)

    def state(self) -> dict[str, Any]:
        return {
            "streams": {key: stream.to_state() for key, stream in self.streams.items()},
            "next_snapshot": self.next_snapshot,
        }

    def handle(self, env: Envelope[CandleClosed]) -> list[Envelope[Event]]:
        candle = env.payload
        stream = self.streams.get(env.key) or self._new_stream(env.key, candle)
        if candle.open_time <= stream.last_open_time:
            return []  # seen before (a replay after a crash): the state already has it
        step = timeframe_ms(candle.timeframe)
        out: list[Envelope[Event]] = []
        for name, severity, message, details in self._update(stream, candle):
            if name.startswith("ma_cross"):
                continue  # a trend change, not a spike: shown in snapshots, not alerted
            last = stream.last_alert.get(name)
            if last is not None and candle.open_time - last < self.config.alert_cooldown * step:
                continue
            stream.last_alert[name] = candle.open_time
            out.append(self._alert(env, name, severity, message, details))
        snapshot = self._maybe_snapshot(env, candle.timeframe)
        if snapshot is not None:
            out.append(snapshot)
        return out

    def _new_stream(self, key: str, candle: CandleClosed) -> StreamState:
        cfg = self.config
        stream = StreamState(
            candle.exchange, candle.symbol, candle.timeframe, BollingerBands(cfg.bb_period, cfg.bb_nbdev),
            ZScore(cfg.volume_z_period), SMA(cfg.fast_ma), SMA(cfg.slow_ma),
            deque(maxlen=max(cfg.change_windows) + 1), deque(maxlen=cfg.volume_window),
        )
        self.streams[key] = stream
        return stream

    def _update(self, stream: StreamState, c: CandleClosed) -> list[tuple[str, str, str, dict[str, Any]]]:
        cfg = self.config
        signals: list[tuple[str, str, str, dict[str, Any]]] = []
        stream.last_open_time = c.open_time
        stream.closes.append(c.close)
        stream.quote_volumes.append(c.volume * c.close)
        bands = stream.bands.update(c.close)
        volume_z = stream.volume_z.update(c.volume)
        fast, slow = stream.fast.update(c.close), stream.slow.update(c.close)

        if bands is not None:
            side = 1 if c.close > bands.upper else -1 if c.close < bands.lower else 0
            if side and side != stream.band_side:
                direction = "up" if side > 0 else "down"
                edge = bands.upper if side > 0 else bands.lower
                where = "above" if side > 0 else "below"
                message = f"{c.symbol} {c.timeframe} closed at {c.close:g}, {where} its band ({edge:g})"
                details = {"close": c.close, "band": edge}
                signals.append((f"bb_breakout_{direction}", "info", message, details))
            stream.band_side = side
        if volume_z is not None:
            spiking = volume_z >= cfg.volume_z_threshold
            if spiking and not stream.volume_spiking:
                message = f"{c.symbol} {c.timeframe} volume {c.volume:g} is {volume_z:.1f} sd above its mean"
                details = {"volume": c.volume, "z": round(volume_z, 4)}
                signals.append(("volume_spike", "warning", message, details))
            stream.volume_spiking = spiking
        if fast is not None and slow is not None:
            above = fast > slow
            if stream.above_fast is not None and above != stream.above_fast:
                direction = "up" if above else "down"
                message = f"{c.symbol} {c.timeframe} SMA{cfg.fast_ma} crossed {direction} SMA{cfg.slow_ma}"
                signals.append((f"ma_cross_{direction}", "info", message, {"fast": fast, "slow": slow}))
            stream.above_fast = above

        width = (bands.upper - bands.lower) if bands is not None else 0.0
        stream.row = {
            "exchange": c.exchange, "symbol": c.symbol, "price": c.close,
            "change_pct": {str(w): self._change(stream.closes, w) for w in cfg.change_windows},
            "quote_volume": sum(stream.quote_volumes),
            "volume_z": volume_z,
            "bb_position": (c.close - bands.lower) / width if bands is not None and width > 0 else None,
            "signals": [name for name, *_ in signals],
        }
        return signals

    @staticmethod
    def _change(closes: deque[float], window: int) -> float | None:
        if len(closes) <= window:
            return None
        then = closes[-1 - window]
        return (closes[-1] / then - 1.0) * 100.0

    def _maybe_snapshot(self, env: Envelope[CandleClosed], timeframe: str) -> Envelope[Event] | None:
        due = self.next_snapshot.get(timeframe)
        if due is None:
            self.next_snapshot[timeframe] = (env.ts // self._every + 1) * self._every
            return None
        if env.ts < due:
            return None
        self.next_snapshot[timeframe] = (env.ts // self._every + 1) * self._every
        scan = self.snapshot(timeframe, env.ts)
        key = f"scan:{timeframe}"
        return Envelope.create(scan, key=key, ts=env.ts, source=ScannerAgent.name, caused_by=env)

    def snapshot(self, timeframe: str, as_of: int) -> MarketScan:
        """The filtered universe of `timeframe`, ranked, as of event time `as_of`."""
        cfg = self.config
        rows = [
            stream.row for stream in self.streams.values()
            if stream.timeframe == timeframe and stream.row
            and (not cfg.symbols or stream.symbol in cfg.symbols) and stream.symbol not in cfg.exclude
            and stream.row["quote_volume"] >= cfg.min_quote_volume
        ]
        longest = str(max(cfg.change_windows))

        def sort_key(row: dict[str, Any]) -> tuple[bool, float]:
            value = {
                "volume": row["quote_volume"], "price": row["price"], "market_cap": row.get("market_cap"),
                "change": row["change_pct"][longest],
            }[cfg.rank_by]
            return (value is None, -(value or 0.0))

        ranked = sorted(rows, key=lambda row: (sort_key(row), row["exchange"], row["symbol"]))[: cfg.top]
        return MarketScan(
            timeframe=timeframe, as_of=as_of, rank_by=cfg.rank_by,
            rows=[ScanRow(rank=i + 1, **row) for i, row in enumerate(ranked)],
        )

    @staticmethod
    def _alert(
        env: Envelope[CandleClosed], name: str, severity: str, message: str, details: dict[str, Any]
    ) -> Envelope[Event]:
        alert = AlertRaised(
            name=f"scanner.{name}", severity=severity, message=message,  # type: ignore[arg-type]
            symbol=env.payload.symbol, details={**details, "stream": env.key},
        )
        return Envelope.create(alert, key=env.payload.symbol, ts=env.ts, source=ScannerAgent.name,
                               caused_by=env, discriminator=name)


class ScannerAgent:
    """Ranks the universe on market.scan and raises spike alerts (Bollinger, volume, MA cross)."""

    name: ClassVar[str] = "scanner"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES,)
    produces: ClassVar[tuple[TopicSpec, ...]] = (MARKET_SCAN, ALERTS)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.config = deps.settings.scanner if deps.settings is not None else ScannerConfig()
        self.core = ScannerCore(self.config)

    async def start(self) -> None:
        saved = await self.deps.store.load(STATE_KEY)
        if saved:
            self.core = ScannerCore(self.config, orjson.loads(saved))

    async def checkpoint(self) -> None:
        await self.deps.store.save(STATE_KEY, orjson.dumps(self.core.state()))

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        assert isinstance(env.payload, CandleClosed)
        return self.core.handle(env)  # type: ignore[arg-type]
