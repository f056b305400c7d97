"""Bayesian confidence of signals: a Beta-Binomial hit rate per (signal, regime), learned online.

Each signal (and each decision) emitted at candle t is a bet on what the close does by candle
t + horizon: `up` is a hit if it rose by more than the round-trip fee (2 x fee), `down` if it
fell by more, `move` if it went either way by more, `flat` (a hold) if it stayed within.
Outcomes are settled by event time only: when the first candle opening at or after
t + horizon candles arrives, its close decides. So the confidence attached at t counts only
outcomes that were known at t.

With the uniform prior Beta(1, 1), after `hits` of `trials` the hit rate's posterior is
Beta(1 + hits, 1 + trials - hits): mean (1 + hits) / (2 + trials), and the equal-tailed
credible interval comes from the regularised incomplete beta function's inverse.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from scipy.special import betaincinv

from topics.technical import Confidence

PRIOR = (1.0, 1.0)  # Beta(alpha, beta): uniform, "no idea yet"


def posterior(hits: int, trials: int, level: float) -> tuple[float, float, float]:
    """(mean, lower, upper) of Beta(1 + hits, 1 + trials - hits) with `level` mass between the bounds."""
    if not 0 <= hits <= trials:
        raise ValueError(f"hits must be between 0 and trials, got {hits} of {trials}")
    alpha, beta = PRIOR[0] + hits, PRIOR[1] + trials - hits
    tail = (1.0 - level) / 2.0
    mean = alpha / (alpha + beta)
    return mean, float(betaincinv(alpha, beta, tail)), float(betaincinv(alpha, beta, 1.0 - tail))


def is_hit(expects: str, change: float, threshold: float) -> bool:
    """Whether a relative close change `change` fulfils `expects` against the round-trip cost `threshold`."""
    if expects == "up":
        return change > threshold
    if expects == "down":
        return change < -threshold
    if expects == "move":
        return abs(change) > threshold
    if expects == "flat":
        return abs(change) <= threshold
    raise ValueError(f"unknown expectation {expects!r}")


@dataclass(frozen=True)
class Pending:
    """A signal whose outcome is not known yet."""

    name: str
    expects: str
    regime: str
    entry: float  # close of the candle it was emitted on
    due: int  # open_time of the candle whose close settles it

    def to_state(self) -> list[Any]:
        return [self.name, self.expects, self.regime, self.entry, self.due]


class HitRates:
    """Counts per (signal, regime) and the signals still waiting for their outcome, for one stream."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # "signal|regime" -> [hits, trials]
        self.pending: deque[Pending] = deque()  # in due order: signals are added in time order

    def settle(self, open_time: int, close: float, threshold: float) -> int:
        """Judge every pending signal due at or before the candle opening at `open_time`; how many."""
        settled = 0
        while self.pending and self.pending[0].due <= open_time:
            signal = self.pending.popleft()
            counts = self.counts.setdefault(f"{signal.name}|{signal.regime}", [0, 0])
            counts[0] += int(is_hit(signal.expects, close / signal.entry - 1.0, threshold))
            counts[1] += 1
            settled += 1
        return settled

    def expect(self, name: str, expects: str, regime: str, entry: float, due: int) -> None:
        """Remember a signal emitted now, to be judged at the candle opening at `due`."""
        self.pending.append(Pending(name, expects, regime, entry, due))

    def confidence(self, name: str, regime: str, level: float) -> Confidence:
        """The posterior of `name`'s hit rate in `regime`, from the outcomes settled so far."""
        hits, trials = self.counts.get(f"{name}|{regime}", (0, 0))
        mean, lower, upper = posterior(hits, trials, level)
        return Confidence(mean=mean, lower=lower, upper=upper, level=level, hits=hits, trials=trials,
                          regime=regime)

    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts, "pending": [signal.to_state() for signal in self.pending]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HitRates:
        rates = cls()
        rates.counts = {key: list(value) for key, value in state["counts"].items()}
        rates.pending = deque(Pending(*item) for item in state["pending"])
        return rates
