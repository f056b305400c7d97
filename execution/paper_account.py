"""The paper account the trading agents and the backtest agree on: its opening deposit and its markets.

The risk agent values the account from the fills it reads; the execution agent books them as the
venue makes them. Both start from the same deposit (`paper.starting_cash` in `paper.quote_asset`),
so their equity agrees after every fill. Every paper instrument trades under the same generic
rules (`paper_market`) on a paper venue configured from `paper.*` (`venue_config`); the backtest
uses the same rules by default, so its orders are the ones the paper agents would send.
"""

from __future__ import annotations

from config.settings import PaperTradingConfig
from execution.ledger import STREAM_IDS_KEPT, Ledger, Transfer
from execution.market import Market
from execution.paper_gateway import PaperConfig

ACCOUNT = "paper"  # the LedgerStore account the execution agent writes and `cryptiq pnl` reads
OPENING_TRANSFER = "paper-opening-deposit"


def opening_ledger(config: PaperTradingConfig) -> Ledger:
    """A ledger holding only the starting cash, booked at event time 0, that remembers the newest
    `STREAM_IDS_KEPT` entry ids (the agents book fills from streams for as long as they run)."""
    ledger = Ledger(remember=STREAM_IDS_KEPT)
    ledger.apply(opening_deposit(config))
    return ledger


def opening_deposit(config: PaperTradingConfig) -> Transfer:
    return Transfer(transfer_id=OPENING_TRANSFER, asset=config.quote_asset, amount=config.starting_cash,
                    ts_event=0)


def paper_market(config: PaperTradingConfig, exchange: str, symbol: str) -> Market:
    """The rules every paper instrument trades under (no venue to ask): the configured steps."""
    return Market(exchange, symbol, tick_size=config.tick_size, step_size=config.step_size,
                  min_quantity=config.step_size, min_notional=config.min_notional)


def venue_config(config: PaperTradingConfig) -> PaperConfig:
    return PaperConfig(maker_fee_rate=config.maker_fee_rate, taker_fee_rate=config.taker_fee_rate,
                       slippage_bps=config.slippage_bps, max_participation=config.max_participation)
