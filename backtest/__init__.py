"""Backtesting: the event-driven engine over the same strategy, risk and paper-execution cores as the
live agents, its reports, multi-strategy comparison, walk-forward, Monte Carlo and the optimiser."""
