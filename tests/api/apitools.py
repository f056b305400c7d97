"""Helpers of the ops API tests: a movable clock, the server under test, a sample ExecutionContext."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pyotp

from config import Settings
from topics.envelope import Envelope
from topics.trading import HoldingRisk, RiskBreakdown

PASSWORD = "correct horse battery"


class FakeClock:
    """Wall-clock time plus `offset` seconds: tests jump ahead with `advance`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class ApiUnderTest:
    url: str
    settings: Settings
    clock: FakeClock
    totp: dict[str, str]  # user name -> TOTP secret
    engine: Any
    kafka: dict[str, Any]
    redis_url: str

    def code(self, user: str) -> str:
        """The user's TOTP code now, on the API's clock."""
        return pyotp.TOTP(self.totp[user]).at(int(self.clock()))

    def next_code(self, user: str) -> str:
        """The user's TOTP code of the next 30 s step (the clock moves there): codes are single-use."""
        self.clock.advance(30)
        return self.code(user)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def token(self, user: str, password: str = PASSWORD) -> str:
        async with self.client() as client:
            response = await client.post("/auth/token", data={"username": user, "password": password})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    async def save_context(self, context: Any) -> None:
        """Store an ExecutionContext where the orchestrator agent stores it (the API's contract)."""
        from memory.redis_store import RedisStateStore, connect_redis
        from orchestrator.context import REDIS_KEY, REDIS_SCOPE

        client = connect_redis(self.redis_url)
        try:
            await RedisStateStore(client, self.settings.redis.namespace, REDIS_SCOPE).save(REDIS_KEY,
                                                                                           context.to_json())
        finally:
            await client.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sample_context(*, as_of: int, regime: str = "bull", agent_lag: int = 3) -> Any:
    """An ExecutionContext with one stream (regime, strategy, an open intent) and two agents."""
    from orchestrator.context import AgentHealth, ExecutionContext, StreamState
    from topics.orchestration import OpenIntent

    stream = StreamState(
        stream="binance:BTC/USDT:1h", exchange="binance", symbol="BTC/USDT", timeframe="1h", regime=regime,
        regime_since=as_of - 7_200_000, strategy="sma_cross", params={"fast": 10, "slow": 30},
        position=Decimal("0.5"), last_candle=as_of - 3_600_000,
        open_intents=(OpenIntent(decision_id="dec-open-1", side="buy", strategy="sma_cross", ts=as_of,
                                 status="approved", size=Decimal("0.25")),),
    )
    agents = {
        "technical": AgentHealth(agent="technical", instance="host:1", status="ready", processed=54_424,
                                 dead_lettered=2, lag=agent_lag, last_heartbeat=as_of),
        "risk": AgentHealth(agent="risk", instance="host:1", status="ready", processed=3_700, dead_lettered=0,
                            lag=0, last_error="RetriableError: postgres unreachable", last_heartbeat=as_of),
    }
    return ExecutionContext(as_of=as_of, streams={stream.stream: stream}, agents=agents)


def risk_breakdown(portfolio: str, ts: int, equity: str, **changes: Any) -> Envelope[RiskBreakdown]:
    """A RiskBreakdown of `portfolio` holding 500 USDT of BTC/USDT, as the risk agent publishes it."""
    values: dict[str, Any] = {
        "portfolio": portfolio, "as_of": ts, "equity": Decimal(equity), "gross_exposure": Decimal("500"),
        "net_exposure": Decimal("500"), "leverage": 0.5, "volatility": 0.62, "periods_per_year": 8760.0,
        "liquidity": 0.0001, "concentration_hhi": 1.0, "largest_share": 1.0, "correlation": None,
        "holdings": [HoldingRisk(exchange="binance", symbol="BTC/USDT", notional=Decimal("500"), weight=0.5,
                                 volatility=0.62, liquidity=0.0001)],
    }
    values.update(changes)
    payload = RiskBreakdown(**values)
    return Envelope.create(payload, key=portfolio, ts=ts, source="risk")
