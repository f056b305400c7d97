"""The execution agent on live venues: the recorded-ccxt exchange and an eth-tester chain.

`execution.venue` selects the venue; the agent gets it through its `live_venue` seam (a ccxt
venue over `ccxt_replay`'s simulated account, whose client is a real ccxt object, or the web3
venue on the chain `test_web3_venue` deploys), so everything from the decision to Postgres runs
as in production. Each test has its own Postgres database: the live account's books and the
order store start empty.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ccxt_replay import BinanceExchange
from eth_account import Account
from execution_data import FakeLog
from pgtools import fresh_database
from pydantic import SecretStr
from test_web3_venue import Chain, chain  # noqa: F401 (the module-scoped eth-tester chain fixture)

import infra
from agents.base import AgentDeps
from agents.execution import ExecutionAgent, LiveVenue
from agents.risk import RiskCore
from config import Settings, load_settings
from config.errors import ConfigError, RetriableError
from config.settings import ExchangeConfig, ExecutionConfig, PaperTradingConfig, PostgresConfig, RiskConfig
from execution.ccxt_venue import CcxtVenue
from execution.order import client_order_id
from execution.paper_account import ACCOUNT
from execution.web3_venue import from_settings as web3_from_settings
from factories import HOUR_MS, candle_envelope
from memory.database import create_engine
from memory.ledger import LedgerStore
from memory.migrations import upgrade
from memory.orders import OrderStore
from memory.ports import InMemoryStateStore
from topics.envelope import Envelope
from topics.events import Event
from topics.orders import AccountTransfer, OrderFilled, OrderUpdated
from topics.registry import EXECUTION_ACCOUNTS, EXECUTION_REPORTS, ORDERS, REGISTRY
from topics.trading import KillSwitchChanged, PortfolioSnapshot, RiskDecision

D = Decimal
CRYPTIQ = Path(sys.executable).with_name("cryptiq")
T0 = 1_767_225_000_000  # event time of the decisions (the simulated exchange stamps its own times)


@pytest.fixture
async def database(endpoints: infra.Endpoints) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    async with fresh_database(endpoints.postgres_url) as url:
        await upgrade(url)
        yield url


def live_settings(settings: Settings, database: str, venue: str, **changes: Any) -> Settings:
    return settings.model_copy(update={
        "postgres": PostgresConfig(url=SecretStr(database)), "execution": ExecutionConfig(venue=venue),
        **changes,
    })


def ccxt_agent(settings: Settings, exchange: BinanceExchange, store: InMemoryStateStore | None = None,
               log: FakeLog | None = None) -> ExecutionAgent:
    """An execution agent whose ccxt venue is a new ccxt object (a new process) on `exchange`."""
    async def venue(_: Settings) -> LiveVenue:
        return CcxtVenue(exchange.client())
    deps = AgentDeps(store=store or InMemoryStateStore(), log=log or FakeLog(), settings=settings)
    return ExecutionAgent(deps, live_venue=venue)


def binance_account() -> BinanceExchange:
    return BinanceExchange(balances={"USDT": ("1000", "0"), "BTC": ("0.5", "0")})


def decision(decision_id: str, **changes: Any) -> Envelope[Event]:
    values: dict[str, Any] = {
        "decision_id": decision_id, "strategy": "t", "exchange": "binance", "symbol": "BTC/USDT",
        "side": "buy", "entry_type": "market", "entry_price": D("43500"), "verdict": "approved",
        "size": D("0.002"), "risk_amount": D("3"), "stop_loss": D("42000"), "take_profit": D("46000"),
        "reasons": ["test"], "portfolio": PortfolioSnapshot(ts=0, equity=D("1000")),
    }
    values.update(changes)
    payload = RiskDecision(**values)
    return Envelope.create(payload, key=payload.key, ts=T0, source="test")


def at(env: Envelope[Event], ts: int) -> Envelope[Event]:
    assert isinstance(env.payload, RiskDecision)
    return Envelope.create(env.payload, key=env.key, ts=ts, source="test")


OPENED = ["ccxt:binance +0.5 BTC", "ccxt:binance +1000 USDT"]  # the account's transfers, as `described`


def described(out: list[Envelope[Event]]) -> list[str]:
    """Each output in short: an order's status, `fill <quantity>@<price>` or `<account> +<amount> <asset>`."""
    return [
        e.payload.status if isinstance(e.payload, OrderUpdated)
        else f"{e.payload.account} {e.payload.amount.normalize():+f} {e.payload.asset}"
        if isinstance(e.payload, AccountTransfer)
        else f"fill {e.payload.quantity.normalize():f}@{e.payload.price.normalize():f}"  # type: ignore[attr-defined]
        for e in out
    ]


async def cryptiq(settings: Settings, database: str, *args: str) -> tuple[int, str, str]:
    """Run the CLI on this test's database: (exit code, stdout, stderr)."""
    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home), CRYPTIQ_POSTGRES_URL=database, COLUMNS="200")
    process = await asyncio.create_subprocess_exec(
        str(CRYPTIQ), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def stored(database: str, cid: str, account: str) -> tuple[Any, list[OrderFilled], Any]:
    engine = create_engine(database)
    try:
        orders = OrderStore(engine)
        return await orders.get(cid), await orders.fills(cid), await LedgerStore(engine).state(account)
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------------- ccxt


async def test_an_approved_decision_is_placed_at_the_exchange_reported_and_booked(
    settings: Settings, database: str
) -> None:
    exchange = binance_account()
    config = live_settings(settings, database, "ccxt:binance")
    agent = ccxt_agent(config, exchange)
    await agent.start()
    out = await agent.handle(at(decision("live-1"), T0))
    cid = client_order_id("live-1")

    [create] = exchange.creates()  # one order went to the exchange, with our client order id
    assert (create.params["newClientOrderId"], create.params["side"], create.params["type"]) == (
        cid, "BUY", "MARKET")
    assert D(create.params["quantity"]) == D("0.002")
    # the account's opening balances first (for the risk agent's books), with the first input's outputs
    assert described(out) == [*OPENED, "new", "submitted", "filled", "fill 0.002@43500"]
    topics = [REGISTRY.topic_of(type(e.payload)) for e in out]
    assert topics == [EXECUTION_ACCOUNTS, EXECUTION_ACCOUNTS, ORDERS, ORDERS, ORDERS, EXECUTION_REPORTS]
    assert [(e.key, e.payload.exchange, e.payload.transfer_id) for e in out[:2]] == [  # type: ignore[attr-defined]
        ("ccxt:binance", "binance", "ccxt:binance:opening:BTC"),
        ("ccxt:binance", "binance", "ccxt:binance:opening:USDT"),
    ]
    fill = out[-1].payload
    assert isinstance(fill, OrderFilled)
    assert (fill.exchange, fill.fee, fill.fee_asset) == ("binance", D("0.087"), "USDT")
    assert fill.trade_id == f"binance:{exchange.trades[0].id}"

    books = agent.state.accounts["ccxt:binance"]  # opened from the exchange's balances, then the fill
    assert books.positions["BTC/USDT"].quantity == D("0.002")
    assert books.cash == {"BTC": D("0.5"), "USDT": D("1000") - D("87") - D("0.087")}
    assert agent.state.ledger.positions == {}  # the paper account saw nothing
    assert agent.state.protections["binance:BTC/USDT"].stop == D("42000")  # exits armed by the fill
    risk = RiskCore(RiskConfig(), PaperTradingConfig(), venues=config.live_venues())  # risk, fed the outputs
    for env in out:
        risk.handle(env)
    assert risk.account("binance").book.ledger.cash == books.cash
    assert risk.account("binance").book.ledger.positions == books.positions
    assert risk.ledger.positions == {}

    await agent.checkpoint()
    await agent.close()
    order, fills, ledger = await stored(database, cid, "ccxt:binance")
    assert (order.status, order.venue_order_id) == ("filled", exchange.order(cid).id)
    assert [f.trade_id for f in fills] == [fill.trade_id]
    assert D(ledger.state["positions"]["BTC/USDT"]["quantity"]) == D("0.002")
    assert D(ledger.state["assets"]["USDT"]["net_deposits"]) == D("1000")

    code, out, err = await cryptiq(settings, database, "pnl", "--account", "ccxt:binance")
    assert code == 0, err
    assert "Account ccxt:binance" in out
    assert "BTC/USDT" in out
    code, out, err = await cryptiq(settings, database, "pnl", "--account", "ccxt:kraken")
    assert code != 0
    assert err.strip().splitlines() == [
        "error: no books for account 'ccxt:kraken': it is opened when the execution agent starts with "
        "execution.venue set to it"
    ]


async def test_killed_after_sending_before_the_commit_the_restart_sends_nothing_and_loses_nothing(
    settings: Settings, database: str
) -> None:
    exchange = binance_account()
    config = live_settings(settings, database, "ccxt:binance")
    env = at(decision("live-crash"), T0)
    first = ccxt_agent(config, exchange)
    await first.start()
    before = await first.handle(env)  # the order went out and the outputs were published ...
    assert len(exchange.creates()) == 1
    # ... and the process died: no checkpoint, no commit, and its saved state is gone too.

    log = FakeLog()
    second = ccxt_agent(config, exchange, InMemoryStateStore(), log)
    await second.start()
    after = await second.handle(env)  # the uncommitted decision is read again

    assert len(exchange.creates()) == 1  # never sent twice: found at the exchange by client order id
    assert [e.event_id for e in after] == [e.event_id for e in before]  # the same events, same ids
    assert [e.payload for e in after] == [e.payload for e in before]
    assert [kw["client_order_id"] for kw in log.named("order_placed")] == [client_order_id("live-crash")]

    await second.checkpoint()
    await second.close()
    order, fills, ledger = await stored(database, client_order_id("live-crash"), "ccxt:binance")
    assert order.status == "filled"
    assert [(f.quantity, f.price) for f in fills] == [(D("0.002"), D("43500"))]
    # the books were opened once, before the order, and hold its fill once
    assert D(ledger.state["assets"]["USDT"]["cash"]) == D("1000") - D("87") - D("0.087")
    assert D(ledger.state["positions"]["BTC/USDT"]["quantity"]) == D("0.002")


async def test_a_lost_reply_is_retried_by_the_runtime_and_the_order_is_not_sent_twice(
    settings: Settings, database: str
) -> None:
    exchange = binance_account()
    agent = ccxt_agent(live_settings(settings, database, "ccxt:binance"), exchange)
    await agent.start()
    env = at(decision("live-lost"), T0)
    exchange.lose_next_create_reply = True  # the exchange takes the order; its answer never arrives
    with pytest.raises(RetriableError):
        await agent.handle(env)
    out = await agent.handle(env)  # the runtime's retry of the same input
    assert described(out) == [*OPENED, "new", "submitted", "filled", "fill 0.002@43500"]
    assert len(exchange.creates()) == 1
    assert agent.state.accounts["ccxt:binance"].positions["BTC/USDT"].quantity == D("0.002")
    await agent.close()


async def test_a_fill_while_the_agent_was_down_is_reconciled_at_start_up(
    settings: Settings, database: str
) -> None:
    exchange = binance_account()
    config = live_settings(settings, database, "ccxt:binance")
    store = InMemoryStateStore()
    first = ccxt_agent(config, exchange, store)
    await first.start()
    limit = at(decision("live-rest", entry_type="limit", entry_price=D("43000")), T0)
    assert described(await first.handle(limit)) == [*OPENED, "new", "submitted"]  # it rests at the exchange
    await first.checkpoint()  # committed: the order store holds it as submitted
    await first.close()
    cid = client_order_id("live-rest")
    exchange.fill(cid, "0.002", "43000", fee="0.05")  # while the agent is down

    log = FakeLog()
    second = ccxt_agent(config, exchange, store, log)
    await second.start()
    assert log.named("venue_reconciled")[0]["events"] == 2
    candle = candle_envelope(open_time=T0 - T0 % HOUR_MS, open=43000.0, high=43100.0, low=42900.0,
                             close=43050.0, volume=10.0)
    out = await second.handle(candle)  # the first input carries what start-up found

    assert described(out) == ["filled", "fill 0.002@43000"]  # books from the saved state: no transfers
    assert [e.payload.seq for e in out if isinstance(e.payload, OrderUpdated)] == [2]
    assert len(exchange.creates()) == 1
    books = second.state.accounts["ccxt:binance"]
    assert books.positions["BTC/USDT"].quantity == D("0.002")
    assert books.cash["USDT"] == D("1000") - D("86") - D("0.05")
    assert "binance:BTC/USDT" in second.state.protections  # the entry's exits, armed by the late fill

    await second.checkpoint()
    await second.close()
    order, fills, _ = await stored(database, cid, "ccxt:binance")
    assert (order.status, order.filled_quantity) == ("filled", D("0.002"))
    assert [f.fee for f in fills] == [D("0.05")]

    # Its saved state lost, a third start reopens the books from Postgres and announces the opening
    # transfers again (a reader that booked them ignores them by id), not the balances of today.
    third = ccxt_agent(config, exchange, InMemoryStateStore())
    await third.start()
    later = candle_envelope(open_time=T0 - T0 % HOUR_MS + HOUR_MS, open=43000.0, high=43100.0, low=42900.0,
                            close=43050.0, volume=10.0)
    assert described(await third.handle(later)) == OPENED
    assert third.state.accounts["ccxt:binance"].positions["BTC/USDT"].quantity == D("0.002")
    await third.close()


async def test_fills_of_a_resting_order_are_polled_on_candles_of_its_exchange(
    settings: Settings, database: str
) -> None:
    exchange = binance_account()
    agent = ccxt_agent(live_settings(settings, database, "ccxt:binance"), exchange)
    await agent.start()
    limit = at(decision("live-poll", entry_type="limit", entry_price=D("43000")), T0)
    assert described(await agent.handle(limit)) == [*OPENED, "new", "submitted"]
    cid = client_order_id("live-poll")
    exchange.fill(cid, "0.001", "43000", fee="0.02")
    hour = T0 - T0 % HOUR_MS
    other = candle_envelope(exchange="kraken", symbol="BTC/USDT", open_time=hour, open=43000.0, high=43100.0,
                            low=42900.0, close=43050.0, volume=10.0)
    assert await agent.handle(other) == []  # another exchange's candle: the account is not asked
    polls = len(exchange.requests)
    candle = candle_envelope(open_time=hour, open=43000.0, high=43100.0, low=42900.0, close=43050.0,
                             volume=10.0)
    assert described(await agent.handle(candle)) == ["partially_filled", "fill 0.001@43000"]
    assert len(exchange.requests) > polls
    books = agent.state.accounts["ccxt:binance"]
    assert books.positions["BTC/USDT"].quantity == D("0.001")
    assert books.marks["BTC/USDT"] == D("43050")  # the candle marks the live account's position
    await agent.close()


async def test_the_kill_switch_cancels_our_orders_at_the_exchange_and_leaves_foreign_ones(
    settings: Settings, database: str
) -> None:
    exchange = binance_account()
    log = FakeLog()
    agent = ccxt_agent(live_settings(settings, database, "ccxt:binance"), exchange, log=log)
    await agent.start()
    limit = at(decision("live-kill", entry_type="limit", entry_price=D("43000")), T0)
    assert described(await agent.handle(limit)) == [*OPENED, "new", "submitted"]
    exchange.place_by_hand("by-hand-1", "sell", "0.001", "50000")  # someone else's order on the account
    switch = KillSwitchChanged(engaged=True, actor="ops", reason="test", at=T0 + 10)
    out = await agent.handle(Envelope.create(switch, key="kill-switch", ts=T0 + 10, source="test"))

    cid = client_order_id("live-kill")
    assert described(out) == ["cancelled"]
    assert out[0].payload.client_order_id == cid  # type: ignore[attr-defined]
    assert exchange.order(cid).status == "canceled"
    assert exchange.order("by-hand-1").status == "open"  # not ours: left alone, and said so
    assert [kw["client_order_id"] for kw in log.named("order_not_cancelled")] == ["by-hand-1"]
    blocked = await agent.handle(at(decision("live-after-kill"), T0 + 20))
    assert described(blocked) == ["new", "rejected"]
    assert len(exchange.creates()) == 1
    await agent.close()


# ---------------------------------------------------------------------------------------- web3


async def web3_agent(chain: Chain, settings: Settings, **web3: Any) -> ExecutionAgent:  # noqa: F811
    """A started execution agent whose `web3.*` keys are a new funded wallet on the test chain."""
    wallet = Account.create()
    await chain.fund(wallet.address)
    config = chain.config.model_copy(update={"private_key": SecretStr(wallet.key.hex()), **web3})
    configured = settings.model_copy(update={"web3": config})

    async def venue(selected: Settings) -> LiveVenue:
        return await web3_from_settings(selected, provider=chain.provider)  # from the agent's settings

    agent = ExecutionAgent(AgentDeps(store=InMemoryStateStore(), log=FakeLog(), settings=configured),
                           live_venue=venue)
    await agent.start()
    return agent


async def test_the_web3_venue_selected_by_config_swaps_an_approved_decision(
    settings: Settings, database: str, chain: Chain  # noqa: F811 (the fixture imported above)
) -> None:
    agent = await web3_agent(chain, live_settings(settings, database, "web3"))
    assert agent.state.accounts["web3"].cash == {"ETH": D(1000), "TKA": D(1000), "TKB": D(100_000)}
    now = await chain.now_ms()
    swap = decision(f"swap-{uuid.uuid4().hex[:6]}", exchange="uniswap_v2", symbol="ETH/TKB", size=D("1"),
                    entry_price=D("2000"), stop_loss=D("1800"), take_profit=D("2400"), risk_amount=D("200"))
    env = at(swap, now)
    out = await agent.handle(env)

    assert [d.split()[0] for d in described(out)] == ["web3"] * 3 + ["new", "submitted", "filled", "fill"]
    submitted, fill = out[4].payload, out[-1].payload
    assert isinstance(submitted, OrderUpdated)
    assert isinstance(fill, OrderFilled)
    receipt = await chain.w3.eth.get_transaction_receipt(submitted.venue_order_id)  # type: ignore[arg-type]
    assert receipt["status"] == 1
    assert (fill.trade_id, fill.quantity, fill.fee_asset) == (submitted.venue_order_id, D(1), "ETH")
    assert D(1900) < fill.price < D(2100)
    live = agent.live
    assert live is not None
    books = agent.state.accounts["web3"]
    assert books.balances() == await live.fetch_balances()  # the books match the wallet on chain, exactly
    assert agent.state.ledger.positions == {}

    await agent.checkpoint()
    await agent.close()
    order, _, ledger = await stored(database, fill.client_order_id, "web3")
    assert order.status == "filled"
    assert D(ledger.state["positions"]["ETH/TKB"]["quantity"]) == 1


async def test_a_swap_whose_receipt_comes_late_is_settled_on_a_later_candle(
    settings: Settings, database: str, chain: Chain  # noqa: F811 (the fixture imported above)
) -> None:
    agent = await web3_agent(chain, live_settings(settings, database, "web3"), receipt_timeout_s=0.2)
    tester = chain.provider.ethereum_tester
    swap = decision(f"late-{uuid.uuid4().hex[:6]}", exchange="uniswap_v2", symbol="ETH/TKB", side="sell",
                    size=D("1"), entry_price=D("2000"), stop_loss=D("2400"), take_profit=D("1600"),
                    risk_amount=D("400"))
    now = await chain.now_ms()
    tester.disable_auto_mine_transactions()
    try:
        sent = described(await agent.handle(at(swap, now)))
        assert [d.split()[0] for d in sent] == ["web3"] * 3 + ["new", "submitted"]  # no receipt yet
        tester.mine_blocks(1)
    finally:
        tester.enable_auto_mine_transactions()
    hour = now - now % HOUR_MS
    candle = candle_envelope(exchange="uniswap_v2", symbol="ETH/TKB", open_time=hour, open=2000.0,
                             high=2010.0, low=1990.0, close=2000.0, volume=10.0)
    out = await agent.handle(candle)
    assert [d.split()[0] for d in described(out)] == ["filled", "fill"]
    assert agent.state.accounts["web3"].positions["ETH/TKB"].quantity == D("-1")
    live = agent.live
    assert live is not None
    assert agent.state.accounts["web3"].balances() == await live.fetch_balances()
    await agent.close()


# ---------------------------------------------------------------------------------------- config


def test_a_venue_that_is_none_of_the_choices_is_a_one_line_error_naming_key_and_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRYPTIQ_EXECUTION_VENUE", "kraken")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    message = str(bad.value)
    assert "execution.venue = 'kraken'" in message
    assert "CRYPTIQ_EXECUTION_VENUE" in message
    assert "\n" not in message
    monkeypatch.setenv("CRYPTIQ_EXECUTION_VENUE", "ccxt:binance")
    assert load_settings().execution.venue == "ccxt:binance"
    monkeypatch.delenv("CRYPTIQ_EXECUTION_VENUE")
    assert load_settings().execution.venue == "paper"  # the default


@pytest.mark.parametrize(("venue", "exchanges", "message"), [
    ("ccxt:nope", {}, "execution.venue = 'ccxt:nope': 'nope' is not a ccxt exchange id"),
    ("ccxt:binance", {"binance": ExchangeConfig(secret=SecretStr("s"))},
     "execution.venue = 'ccxt:binance': exchanges.binance.api_key is not set"),
    ("ccxt:blofin", {}, "execution.venue = 'ccxt:blofin': exchanges.blofin is not configured"),
    ("web3", {}, "execution.venue = 'web3': web3.private_key is not set"),
])
async def test_a_live_venue_that_cannot_be_built_stops_the_agent_with_one_line(
    settings: Settings, database: str, venue: str, exchanges: dict[str, ExchangeConfig], message: str
) -> None:
    config = live_settings(settings, database, venue, exchanges=exchanges)
    agent = ExecutionAgent(AgentDeps(store=InMemoryStateStore(), log=FakeLog(), settings=config))
    with pytest.raises(ConfigError) as bad:
        await agent.start()
    assert str(bad.value).startswith(message)
    assert "\n" not in str(bad.value)
    assert agent.live is None


def test_paper_stays_the_default_account() -> None:
    agent = ExecutionAgent(AgentDeps(store=InMemoryStateStore(), log=FakeLog()))
    assert (agent.account, agent.live, agent.state.accounts) == (ACCOUNT, None, {})


def test_the_live_venue_names_the_exchange_and_account_risk_sizes_on(settings: Settings) -> None:
    def venues(venue: str) -> dict[str, str]:
        return settings.model_copy(update={"execution": ExecutionConfig(venue=venue)}).live_venues()

    assert venues("paper") == {}
    assert venues("ccxt:binance") == {"binance": "ccxt:binance"}
    assert venues("web3") == {settings.web3.exchange: "web3"}  # uniswap_v2 by default
