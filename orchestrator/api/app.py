"""`create_app`: the ops API and the dashboard as one FastAPI app.

The lifespan migrates the database, opens the Redis client, the Postgres engine, the Kafka
producer (commands) and the Kafka feed (alerts, risk decisions, risk switches), and closes them
again. The dashboard is static HTML + JS under `static/`, served at `/`; it reads the same JSON
routes as any client. OpenAPI: `/openapi.json`, browsable at `/docs`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from config.settings import Settings, reveal
from infra.endpoints import Endpoints
from infra.kafka_client import kafka_client_kwargs
from memory.audit import AuditTrail
from memory.database import create_engine
from memory.migrations import upgrade
from memory.redis_store import RedisStateStore, connect_redis
from memory.users import UserStore
from orchestrator.api import commands, routes
from orchestrator.api.auth import AttemptLimiter, Clock, TokenIssuer, TotpGuard
from orchestrator.api.deps import ApiState, wall_clock
from orchestrator.api.feeds import KafkaFeed, Views
from orchestrator.api.metrics import ApiMetrics
from orchestrator.context import REDIS_SCOPE

STATIC = Path(__file__).parent / "static"
DASHBOARD_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
log = structlog.get_logger("cryptiq.api")


def create_app(settings: Settings, endpoints: Endpoints, *, clock: Clock = wall_clock) -> FastAPI:
    """The app for these settings and servers; `clock` (epoch seconds) is injectable for tests."""
    config = settings.api
    secret = reveal(config.jwt_secret)
    if secret is None:
        secret = secrets.token_urlsafe(32)
        log.warning("api_jwt_secret_generated", note="api.jwt_secret is unset: tokens are signed with a "
                    "random per-process secret and stop working when the API restarts")
    views = Views()
    state = ApiState(
        settings=settings, clock=clock, tokens=TokenIssuer(secret, config.token_ttl_s, clock),
        logins=AttemptLimiter(config.login_attempts, config.login_window_s, clock),
        totp_failures=AttemptLimiter(config.login_attempts, config.login_window_s, clock),
        totp=TotpGuard(clock),
        views=views, metrics=ApiMetrics(views, stale_after_s=3 * settings.agents.heartbeat_interval_s),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upgrade(endpoints.postgres_url)
        state.engine = create_engine(endpoints.postgres_url)
        state.users, state.audit = UserStore(state.engine), AuditTrail(state.engine)
        state.redis = connect_redis(endpoints.redis_url)
        state.context_store = RedisStateStore(state.redis, settings.redis.namespace, REDIS_SCOPE)
        client = kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
        client["client_id"] = f"{client['client_id']}-api"
        state.producer = AIOKafkaProducer(**client, acks="all")
        state.feed = KafkaFeed(client, views)
        app.state.api = state
        try:
            await state.producer.start()
            state.feed.start()
            log.info("api_started")
            yield
        finally:
            await state.feed.stop()
            await state.producer.stop()
            await state.redis.aclose()
            await state.engine.dispose()
            log.info("api_stopped")

    app = FastAPI(
        title="CryptIQ ops API",
        version="1",
        description="Live state, decisions with their multi-agent flow, Prometheus metrics and operator "
        "commands of a CryptIQ deployment. Log in at `POST /auth/token` (OAuth2 password flow); reads need "
        "the viewer role, commands the operator role plus the caller's TOTP code.",
        lifespan=lifespan,
    )
    app.include_router(routes.router)
    app.include_router(commands.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        # Only our own scripts and styles, no framing: a token in sessionStorage stays ours.
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": DASHBOARD_CSP})

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # the template (/decisions/{decision_id}), not the URL
        state.metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        state.metrics.latency.labels(request.method, path).observe(time.perf_counter() - began)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app
