"""The data-quality policy for candles: every anomaly is repaired with a reason or rejected.

Nothing is passed through silently and nothing disappears without a trace. Checked per stream
(exchange:symbol:timeframe), candle by candle in arrival order:

- price NaN/inf, zero or negative: rejected (dead letter); no repair can know the price.
- high < low: rejected; the bar is corrupt.
- volume NaN: repaired, volume = 0; the prices are intact and zero is the honest "unknown"
  for volume-weighted maths. Negative or infinite volume: rejected (a sign error upstream).
- open or close outside [low, high]: repaired, high/low widened to include them; exchanges
  round differently and the traded prices are kept.
- exact duplicate (same open_time, same values): repaired, the repeat is dropped.
- conflicting duplicate (same open_time, other values): rejected; which is right needs a person.
- out of order (older than the last accepted): files are repaired by a stable sort before the
  checks; a live stream rejects it, since a stream cannot go back in time.
- not aligned to the timeframe: rejected; it would break per-candle indicators.
- gap (missing candles): reported, logged and raised as an alert; ccxt sources backfill it.
  Filling it here would invent prices.

`CandleQualityGate` is the streaming core (used live and by replays); `clean_frame` applies the
same gate to a whole file for `cryptiq data import` and `read_candles`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import structlog

from indicators.catalog import CandleRow
from topics.market import timeframe_ms

log = structlog.get_logger("cryptiq.market_data.quality")


# A candle as a source gave it, before any check: the plain candle tuple the indicators use.
RawCandle = CandleRow


@dataclass(frozen=True)
class Verdict:
    """What the gate decided about one candle.

    `candle` is what to publish (None if dropped or rejected); `repairs` say what was changed
    or dropped and why; `rejected` is the reason for the dead letter; `missing_before` counts
    candles absent between the previous accepted one and this one.
    """

    candle: RawCandle | None
    repairs: tuple[str, ...] = ()
    rejected: str | None = None
    missing_before: int = 0


@dataclass
class CandleQualityGate:
    """The policy for one stream; `timeframe` (e.g. "1h") enables gap and alignment checks."""

    timeframe: str | None = None
    last: RawCandle | None = None

    def __post_init__(self) -> None:
        self._step = timeframe_ms(self.timeframe) if self.timeframe else None

    def check(self, raw: RawCandle) -> Verdict:
        """Judge `raw`; the gate remembers the last accepted candle."""
        reason = _price_problem(raw)
        if reason is not None:
            return Verdict(None, rejected=reason)
        candle, repairs = _repair(raw)
        last = self.last
        missing = 0
        if last is not None:
            if candle.open_time == last.open_time:
                if candle == last:
                    return Verdict(None, repairs=(f"exact duplicate at {candle.open_time} dropped",))
                return Verdict(None, rejected=(
                    f"conflicting duplicate of the candle at {candle.open_time}: "
                    f"{tuple(candle)[1:]} vs accepted {tuple(last)[1:]}"
                ))
            if candle.open_time < last.open_time:
                return Verdict(None, rejected=(
                    f"out of order: opens at {candle.open_time}, before the last accepted candle "
                    f"at {last.open_time}"
                ))
            if self._step is not None:
                delta = candle.open_time - last.open_time
                if delta % self._step:
                    return Verdict(None, rejected=(
                        f"open_time {candle.open_time} is not aligned to {self.timeframe} "
                        f"after {last.open_time}"
                    ))
                missing = delta // self._step - 1
        self.last = candle
        return Verdict(candle, repairs=tuple(repairs), missing_before=missing)

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state, so an agent can resume the checks after a restart."""
        return {"timeframe": self.timeframe, "last": list(self.last) if self.last else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CandleQualityGate:
        last = state.get("last")
        return cls(state.get("timeframe"), RawCandle(int(last[0]), *map(float, last[1:])) if last else None)


def _price_problem(raw: RawCandle) -> str | None:
    prices = (raw.open, raw.high, raw.low, raw.close)
    if not all(math.isfinite(p) for p in prices):
        return f"price is not a number at {raw.open_time}: open/high/low/close = {prices}"
    if min(prices) <= 0:
        return f"non-positive price at {raw.open_time}: open/high/low/close = {prices}"
    if raw.high < raw.low:
        return f"high {raw.high} below low {raw.low} at {raw.open_time}"
    if not math.isnan(raw.volume) and (raw.volume < 0 or math.isinf(raw.volume)):
        return f"volume {raw.volume} at {raw.open_time} is negative or infinite"
    return None


def _repair(raw: RawCandle) -> tuple[RawCandle, list[str]]:
    repairs: list[str] = []
    candle = raw
    if math.isnan(raw.volume):
        candle = candle._replace(volume=0.0)
        repairs.append(f"volume was NaN at {raw.open_time}: set to 0")
    high = max(candle.high, candle.open, candle.close)
    low = min(candle.low, candle.open, candle.close)
    if (high, low) != (candle.high, candle.low):
        repairs.append(
            f"open/close outside [low, high] at {raw.open_time}: high {candle.high}->{high}, "
            f"low {candle.low}->{low}"
        )
        candle = candle._replace(high=high, low=low)
    return candle, repairs


@dataclass
class CleanResult:
    """A cleaned candle frame and everything the policy did to get it."""

    frame: pd.DataFrame
    repairs: list[tuple[int, str]] = field(default_factory=list)
    rejects: list[tuple[RawCandle, str]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (open_time after the gap, missing)
    sorted_rows: int = 0


def clean_frame(raw: pd.DataFrame, *, timeframe: str | None = None, source: str = "") -> CleanResult:
    """Apply the policy to a whole frame (columns open_time + OHLCV, optional symbol), logging it."""
    frame = raw
    order = np.argsort(frame["open_time"].to_numpy(), kind="stable")
    out_of_order = int((np.diff(frame["open_time"].to_numpy()) < 0).sum())
    if out_of_order:
        frame = frame.iloc[order].reset_index(drop=True)
    timeframe = timeframe or infer_timeframe(frame["open_time"].to_numpy())
    gate = CandleQualityGate(timeframe)
    result = CleanResult(frame=frame, sorted_rows=out_of_order)
    if out_of_order:
        result.repairs.append((-1, f"{out_of_order} rows were out of order: sorted by open_time"))
    kept: list[RawCandle] = []
    columns = [frame[name].to_numpy() for name in ("open_time", "open", "high", "low", "close", "volume")]
    for values in zip(*columns, strict=True):
        raw_candle = RawCandle(int(values[0]), *(float(v) for v in values[1:]))
        verdict = gate.check(raw_candle)
        result.repairs.extend((raw_candle.open_time, reason) for reason in verdict.repairs)
        if verdict.rejected is not None:
            result.rejects.append((raw_candle, verdict.rejected))
        if verdict.missing_before:
            result.gaps.append((raw_candle.open_time, verdict.missing_before))
        if verdict.candle is not None:
            kept.append(verdict.candle)
    cleaned = pd.DataFrame(kept, columns=list(RawCandle._fields))
    if "symbol" in frame.columns and len(frame):
        cleaned["symbol"] = frame["symbol"].iloc[0]
    result.frame = cleaned
    _log(result, source, timeframe, len(frame))
    return result


def infer_timeframe(open_times: np.ndarray) -> str | None:
    """The candle spacing of a series as a timeframe (the most common step), or None if unclear."""
    steps = np.diff(np.unique(open_times))
    if len(steps) == 0:
        return None
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if step % size == 0:
            return f"{step // size}{unit}"
    return None


def _log(result: CleanResult, source: str, timeframe: str | None, rows: int) -> None:
    missing = sum(n for _, n in result.gaps)
    log.info(
        "candles checked", source=source, timeframe=timeframe, rows=rows, kept=len(result.frame),
        repaired=len(result.repairs), rejected=len(result.rejects), gaps=len(result.gaps), missing=missing,
    )
    for open_time, reason in result.repairs[:20]:
        log.info("candle repaired", source=source, open_time=open_time, reason=reason)
    for candle, reason in result.rejects[:20]:
        log.warning("candle rejected", source=source, open_time=candle.open_time, reason=reason)
    for open_time, count in result.gaps[:20]:
        log.warning("gap in candles", source=source, before=open_time, missing=count)
    hidden = sum(max(0, len(events) - 20) for events in (result.repairs, result.rejects, result.gaps))
    if hidden:
        log.info("more quality events not shown one by one", source=source, count=hidden)
