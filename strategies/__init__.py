"""The Strategy protocol, the built-ins and their registry (pure: candles and signals in, intents out)."""

from strategies.base import Strategy
from strategies.breakout import Breakout
from strategies.mean_reversion import MeanReversion
from strategies.risk_off import RiskOff
from strategies.sma_cross import SmaCross
from strategies.trend import Trend

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Trend, MeanReversion, Breakout, RiskOff, SmaCross)
}

__all__ = ["STRATEGIES"]
