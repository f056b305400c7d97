"""What every route shares (`ApiState`: clients, feed, auth, metrics) and the auth dependencies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings
from memory.audit import AuditTrail
from memory.redis_store import RedisStateStore
from memory.users import Role, UserStore
from orchestrator.api.auth import AttemptLimiter, AuthError, Clock, Principal, TokenIssuer, TotpGuard
from orchestrator.api.feeds import KafkaFeed, Views
from orchestrator.api.metrics import ApiMetrics
from orchestrator.context import REDIS_KEY, ExecutionContext

TOKEN_URL = "auth/token"
oauth2 = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass
class ApiState:
    """Clients and helpers of one running app, made by its lifespan."""

    settings: Settings
    clock: Clock
    tokens: TokenIssuer
    logins: AttemptLimiter
    totp_failures: AttemptLimiter
    totp: TotpGuard
    views: Views
    metrics: ApiMetrics
    engine: AsyncEngine | None = None
    redis: Any = None
    context_store: RedisStateStore | None = None
    producer: AIOKafkaProducer | None = None
    feed: KafkaFeed | None = None
    users: UserStore | None = field(default=None)
    audit: AuditTrail | None = field(default=None)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def load_context(self) -> ExecutionContext | None:
        """The ExecutionContext the orchestrator agent last stored in Redis, or None."""
        assert self.context_store is not None
        raw = await self.context_store.load(REDIS_KEY)
        return None if raw is None else ExecutionContext.from_json(raw)


def api_state(request: Request) -> ApiState:
    state = request.app.state.api
    assert isinstance(state, ApiState), "the app's lifespan has not run"
    return state


State = Annotated[ApiState, Depends(api_state)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def principal(state: State, token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    """The caller, from the bearer token; 401 if there is none or it is not valid now."""
    if token is None:
        raise _unauthorized("not authenticated: log in at POST /auth/token")
    try:
        return state.tokens.verify(token)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through callers with `role` or a higher one (403 otherwise)."""

    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not caller.has(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role} role; {caller.name} is a "
                                f"{caller.role}")
        return caller

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def wall_clock() -> float:
    """The default clock: the API is a boundary, commands are stamped when operators give them."""
    return time.time()
