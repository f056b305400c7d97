"""The scanner core on real candles: spikes, crosses, snapshots, filters, restarts, determinism."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from agents.market_data.core import MarketDataCore, Stream
from agents.market_data.files import bundled_candles, read_raw_candles
from agents.market_data.quality import RawCandle
from agents.scanner import ScannerCore
from config.settings import ScannerConfig
from indicators import batch
from topics.envelope import Envelope
from topics.market import CandleClosed, MarketScan
from topics.system import AlertRaised

ROWS = 1500


def real_envelopes(
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "DOGE/USDT"),
) -> list[Envelope[CandleClosed]]:
    streams = []
    for source in bundled_candles():
        if source.symbol in symbols:
            frame = read_raw_candles(source.path).iloc[:ROWS]
            columns = (frame.open_time, frame.open, frame.high, frame.low, frame.close, frame.volume)
            rows = [RawCandle(int(t), o, h, lo, c, v) for t, o, h, lo, c, v in zip(*columns, strict=True)]
            streams.append((Stream(source.exchange, source.symbol, source.timeframe, source.path.name), rows))
    return [env for env in MarketDataCore().run(streams) if isinstance(env.payload, CandleClosed)]


@pytest.fixture(scope="module")
def candles() -> list[Envelope[CandleClosed]]:
    return real_envelopes()


def run(core: ScannerCore, envelopes: list[Envelope[CandleClosed]]) -> list[Envelope]:
    return [out for env in envelopes for out in core.handle(env)]


def test_alerts_match_batch_indicators_on_the_same_data(candles: list[Envelope[CandleClosed]]) -> None:
    config = ScannerConfig(alert_cooldown=0)
    outputs = run(ScannerCore(config), candles)
    alerts = [env.payload for env in outputs if isinstance(env.payload, AlertRaised)]
    btc = [env.payload for env in candles if env.payload.symbol == "BTC/USDT"]
    closes = [c.close for c in btc]
    upper, _, lower = batch.bbands(closes, config.bb_period, config.bb_nbdev)
    side = [0 if math.isnan(u) else (1 if c > u else -1 if c < lo else 0)
            for c, u, lo in zip(closes, upper, lower, strict=True)]
    expected_up = sum(1 for i in range(1, len(side)) if side[i] == 1 and side[i - 1] != 1)
    got_up = sum(1 for a in alerts if a.symbol == "BTC/USDT" and a.name == "scanner.bb_breakout_up")
    assert got_up == expected_up
    assert expected_up > 5  # the real data does break out


def test_cooldown_limits_repeats_and_ma_crosses_are_not_alerts(candles: list[Envelope[CandleClosed]]) -> None:
    free = Counter(a.payload.name for a in run(ScannerCore(ScannerConfig(alert_cooldown=0)), candles)
                   if isinstance(a.payload, AlertRaised))
    limited = Counter(a.payload.name for a in run(ScannerCore(ScannerConfig(alert_cooldown=48)), candles)
                      if isinstance(a.payload, AlertRaised))
    assert set(free) <= {"scanner.bb_breakout_up", "scanner.bb_breakout_down", "scanner.volume_spike"}
    assert free["scanner.volume_spike"] > 0
    assert sum(limited.values()) < sum(free.values())


def test_snapshots_follow_event_time_and_rank_and_filter(candles: list[Envelope[CandleClosed]]) -> None:
    config = ScannerConfig(snapshot_every="1d", rank_by="price", exclude=["DOGE/USDT"])
    scans = [env for env in run(ScannerCore(config), candles) if isinstance(env.payload, MarketScan)]
    days = {env.ts // 86_400_000 for env in candles}
    assert len(scans) == len(days) - 1  # one per day boundary crossed
    last = scans[-1].payload
    assert [row.symbol for row in last.rows] == ["BTC/USDT", "ETH/USDT"]  # by price, DOGE excluded
    assert [row.rank for row in last.rows] == [1, 2]
    assert last.as_of == scans[-1].ts
    btc = [env.payload for env in candles if env.payload.symbol == "BTC/USDT" and env.ts <= last.as_of]
    assert last.rows[0].price == btc[-1].close
    expected_change = (btc[-1].close / btc[-25].close - 1) * 100
    assert last.rows[0].change_pct["24"] == pytest.approx(expected_change, rel=1e-12)


def test_a_restart_from_saved_state_continues_identically_and_ignores_seen_candles(
    candles: list[Envelope[CandleClosed]],
) -> None:
    config = ScannerConfig()
    straight = run(ScannerCore(config), candles)
    first = ScannerCore(config)
    half = len(candles) // 2
    before = run(first, candles[:half])
    saved = json.loads(json.dumps(first.state()))
    resumed = ScannerCore(config, saved)
    # After a crash the runtime re-reads some already-seen candles: they must change nothing.
    after = run(resumed, candles[half - 50:])
    assert [e.model_dump_json() for e in before + after] == [e.model_dump_json() for e in straight]


def test_same_input_same_output_bytes(candles: list[Envelope[CandleClosed]]) -> None:
    one = [e.model_dump_json() for e in run(ScannerCore(ScannerConfig()), candles)]
    two = [e.model_dump_json() for e in run(ScannerCore(ScannerConfig()), candles)]
    assert one == two


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="slow_ma must be longer than fast_ma"):
        ScannerConfig(fast_ma=50, slow_ma=20)
