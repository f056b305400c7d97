"""The technical agent: per stream, streaming indicators, discrete signals with a Bayesian hit-rate
confidence, a buy/sell/hold decision from a registered decision tree, and user alert rules.

- `core.TechnicalCore`: the pure core (candles in, `TechnicalSignal` and `AlertRaised` out).
- `agent.TechnicalAgent`: its shell (state store, model registry, checkpoints).
- `model`: labels, purged walk-forward evaluation, training and the model file.
- `features`, `signals`, `regime`, `confidence`, `alerts`: one concept each.
"""

from agents.technical.agent import TechnicalAgent
from agents.technical.core import TechnicalCore

__all__ = ["TechnicalAgent", "TechnicalCore"]
