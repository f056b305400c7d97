"""Read routes of the ops API (role viewer or above), login, health and metrics."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, JsonValue
from sqlalchemy import text

from config.errors import CryptiqError
from memory.audit import AuditEntry
from memory.database import translate_errors
from memory.decision_log import DecisionRecord
from memory.ledger import LedgerStore
from orchestrator.api.deps import TOKEN_URL, Admin, State, Viewer
from orchestrator.api.flow import DecisionFlow, decision_flow, recent_decisions
from orchestrator.context import ExecutionContext
from strategies import STRATEGIES
from topics.orchestration import OpenIntent
from topics.trading import RiskBreakdown

LEDGER_ACCOUNT = "paper"  # the account the execution agent books (execution.paper_account.ACCOUNT)

router = APIRouter()


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
    role: str


class Me(BaseModel):
    name: str
    role: str
    expires_at: float = Field(description="when the token expires, epoch seconds")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    postgres: bool
    kafka_feed: str = Field(description="starting, following, retrying or stopped")
    context_stored: bool = Field(description="the orchestrator has stored its ExecutionContext in Redis")


class StateView(BaseModel):
    stored: bool = Field(description="False until the orchestrator agent stores its context")
    context: ExecutionContext
    kill_switch: dict[str, Any] | None = Field(None, description="the latest KillSwitchChanged seen")
    risk_mode: dict[str, Any] | None = Field(None, description="the latest RiskModeChanged seen")


class AgentView(BaseModel):
    agent: str
    instance: str
    status: str
    processed: int
    dead_lettered: int
    lag: int | None
    last_error: str | None
    last_heartbeat: int = Field(description="UTC ms")
    heartbeat_age_s: float
    stale: bool = Field(description="no heartbeat for 3 heartbeat intervals")


class RegimeView(BaseModel):
    stream: str
    exchange: str
    symbol: str
    timeframe: str
    regime: str | None
    regime_since: int | None
    last_candle: int | None


class StrategyView(BaseModel):
    stream: str
    regime: str | None
    strategy: str | None
    params: dict[str, JsonValue]
    pinned: bool
    position: Decimal
    open_intents: list[OpenIntent]


class StrategiesView(BaseModel):
    streams: list[StrategyView]
    available: list[str] = Field(description="strategies an operator may switch a stream to")


class PositionsView(BaseModel):
    account: str
    as_of: int | None = Field(None, description="event time of the newest ledger entry, UTC ms")
    books: dict[str, Any] | None = Field(None, description="assets and positions as the ledger stored them")
    streams: dict[str, Decimal] = Field(description="position per stream as the orchestrator tracks it")


@router.post(f"/{TOKEN_URL}", response_model=Token, tags=["auth"])
async def login(
    state: State, request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    """OAuth2 password flow: a bearer token for a user name and password (form fields)."""
    assert state.users is not None
    client = request.client.host if request.client else "?"
    key = f"{form.username}@{client}"
    wait = state.logins.retry_after(key)
    if wait is not None:
        state.metrics.logins.labels("limited").inc()
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, f"too many failed logins: try again in "
                            f"{wait:.0f} s", headers={"Retry-After": str(max(1, round(wait)))})
    user = await state.users.authenticate(form.username, form.password)
    if user is None:
        state.logins.failed(key)
        state.metrics.logins.labels("failed").inc()
        if state.logins.retry_after(key) is not None and state.audit is not None:
            await state.audit.record(AuditEntry(ts=state.now_ms(), actor=form.username, action="login.locked",
                                                detail={"client": client}))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    state.logins.succeeded(key)
    state.metrics.logins.labels("ok").inc()
    token, who = state.tokens.issue(user.name, user.role)
    return Token(access_token=token, expires_in=state.tokens.ttl_s, role=who.role)


@router.get("/me", response_model=Me, tags=["auth"])
async def me(caller: Viewer) -> Me:
    """Who the token belongs to, and until when."""
    return Me(name=caller.name, role=caller.role, expires_at=caller.expires_at)


@router.get("/health", response_model=Health, tags=["ops"])
async def health(state: State, response: Response) -> Health:
    """Whether Redis and Postgres answer and the Kafka feed follows (no login: for probes)."""
    redis_ok = postgres_ok = stored = False
    try:
        stored = (await state.load_context()) is not None
        redis_ok = True
    except CryptiqError:  # away (RetriableError) or refusing us (ConfigError): report, do not raise
        redis_ok = False
    try:
        assert state.engine is not None
        with translate_errors():
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        postgres_ok = True
    except CryptiqError:
        postgres_ok = False
    feed = state.feed.status if state.feed is not None else "stopped"
    ok = redis_ok and postgres_ok and feed == "following"
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if ok else "degraded", redis=redis_ok, postgres=postgres_ok, kafka_feed=feed,
                  context_stored=stored)


@router.get("/state", response_model=StateView, tags=["state"])
async def get_state(state: State, _: Viewer) -> StateView:
    """The whole ExecutionContext (streams, agents, tasks) and the risk switches."""
    context = await state.load_context()
    return StateView(stored=context is not None, context=context or ExecutionContext(),
                     kill_switch=state.views.kill_switch, risk_mode=state.views.risk_mode)


@router.get("/agents", response_model=list[AgentView], tags=["state"])
async def agents(state: State, _: Viewer) -> list[AgentView]:
    """Each agent's last heartbeat: status, processed, dead-lettered, lag, last error and its age."""
    context = await state.load_context() or ExecutionContext()
    now_s = state.clock()
    stale_after = 3 * state.settings.agents.heartbeat_interval_s
    views = []
    for health in sorted(context.agents.values(), key=lambda h: (h.agent, h.instance)):
        age = max(0.0, now_s - health.last_heartbeat / 1000)
        views.append(AgentView(**health.model_dump(), heartbeat_age_s=round(age, 3), stale=age > stale_after))
    return views


@router.get("/regimes", response_model=list[RegimeView], tags=["state"])
async def regimes(state: State, _: Viewer) -> list[RegimeView]:
    """The confirmed regime of each stream and since when."""
    context = await state.load_context() or ExecutionContext()
    fields = set(RegimeView.model_fields)
    return [RegimeView(**s.model_dump(include=fields)) for _, s in sorted(context.streams.items())]


@router.get("/strategies", response_model=StrategiesView, tags=["state"])
async def strategies(state: State, _: Viewer) -> StrategiesView:
    """The active strategy of each stream, its parameters, whether it is pinned, and its open intents."""
    context = await state.load_context() or ExecutionContext()
    streams = [StrategyView(**s.model_dump(include=set(StrategyView.model_fields)))
               for _, s in sorted(context.streams.items())]
    return StrategiesView(streams=streams, available=sorted(STRATEGIES))


@router.get("/positions", response_model=PositionsView, tags=["state"])
async def positions(state: State, _: Viewer) -> PositionsView:
    """The paper account's books from the ledger in Postgres, and the position per stream."""
    assert state.engine is not None
    stored = await LedgerStore(state.engine).state(LEDGER_ACCOUNT)
    context = await state.load_context() or ExecutionContext()
    return PositionsView(
        account=LEDGER_ACCOUNT, as_of=stored.ts if stored else None, books=stored.state if stored else None,
        streams={key: s.position for key, s in sorted(context.streams.items())},
    )


@router.get("/risk", response_model=list[RiskBreakdown], tags=["state"])
async def risk(state: State, _: Viewer) -> list[RiskBreakdown]:
    """The latest risk breakdown of each portfolio from `risk.breakdown` (paper, and a live venue's
    account when `execution.venue` trades one): exposure, leverage, volatility, liquidity,
    concentration and correlation, and each holding's share."""
    return [breakdown for _, breakdown in sorted(state.views.risk_breakdowns.items())]


@router.get("/decisions", response_model=list[DecisionRecord], tags=["decisions"])
async def decisions(
    state: State, _: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    agent: str | None = None,
    symbol: str | None = None,
) -> list[DecisionRecord]:
    """The newest decisions first, with their inputs, outputs, reasons and trace."""
    assert state.engine is not None
    return await recent_decisions(state.engine, limit=limit, agent=agent, symbol=symbol)


@router.get("/decisions/{decision_id}", response_model=DecisionFlow, tags=["decisions"])
async def decision(state: State, _: Viewer, decision_id: str) -> DecisionFlow:
    """The full trace of one decision: candle, signals and regime, intent, risk, orders, fills."""
    assert state.engine is not None
    flow = await decision_flow(state.engine, decision_id, state.views.risk_decisions)
    if flow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {decision_id!r}")
    return flow


@router.get("/alerts", tags=["state"])
async def alerts(
    state: State, _: Viewer, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    """The newest alerts from `alerts.notifications`, one per alert (channels folded), newest first."""
    return state.views.recent_alerts(limit)


@router.get("/audit", response_model=list[AuditEntry], tags=["ops"])
async def audit(
    state: State, _: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditEntry]:
    """The audit trail, newest first (admins only)."""
    assert state.audit is not None
    return await state.audit.recent(limit=limit)


@router.get("/metrics", tags=["ops"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
async def metrics(state: State) -> Response:
    """Prometheus metrics (no login, like /health: scrapers and probes do not log in)."""
    try:
        state.metrics.context.context = await state.load_context()
    except CryptiqError:  # a scrape still returns the API's own metrics while Redis is away
        state.metrics.context.context = None
    state.metrics.context.now_s = state.clock()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
