"""`up`, `status`, `down` and `endpoints`: the lifecycle of the servers CryptIQ needs.

A server named in the settings (`kafka.bootstrap`, `redis.url`, `postgres.url`) is external:
it is only checked, never started or stopped. Every other one is embedded: started detached on
a free loopback port, recorded in `<home>/infra.json`, logged to `<home>/logs/<name>.log`, and
stopped by `down`. The functions are synchronous; their network checks run on a private event
loop in a worker thread, so they are safe to call from inside or outside a running loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from config.errors import ConfigError
from config.settings import Settings, env_name, redact_url, reveal
from infra.endpoints import Endpoints
from infra.errors import (
    InfraNotRunningError,
    PortInUseError,
    ServerNotAnsweringError,
    ServerStartError,
)
from infra.postgres_server import PostgresServer
from infra.probes import PROBE_ERRORS, probe_kafka, probe_postgres, probe_redis
from infra.process import free_port, is_alive, last_line, port_is_free, reap, spawn, terminate
from infra.redis_server import RedisServer
from infra.server import EmbeddedServer
from infra.state import ServiceRecord, locked, log_path, read_records, state_path, write_records
from infra.tansu import TansuBroker

SERVICES: tuple[str, ...] = ("kafka", "redis", "postgres")
PROBE_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 15.0
_PORT_ATTEMPTS = 3
_POLL_INTERVAL_S = 0.05
_SETTING_KEYS = {"kafka": ("kafka", "bootstrap"), "redis": ("redis", "url"), "postgres": ("postgres", "url")}

log = structlog.get_logger("infra")
T = TypeVar("T")


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` reports for one server. `where` is safe to print (passwords redacted)."""

    name: str
    kind: Literal["embedded", "external"]
    where: str
    pid: int | None
    answering: bool
    detail: str


def up(settings: Settings) -> Endpoints:
    """Make every server answer: check the external ones, start (or reuse) the embedded ones.

    Idempotent: running servers recorded in `infra.json` are reused; records whose process is
    gone are dropped and those servers started again. Raises an `InfraError` that says what to do.
    """
    settings = _absolute_home(settings)
    for name, url in _external_urls(settings).items():
        _require_external(settings, name, url)
    with locked(settings.home):
        records = read_records(settings.home)
        for server in _embedded_servers(settings):
            records[server.name] = _ensure_running(server, records, settings)
        return _endpoints_from(settings, records)


def endpoints(settings: Settings) -> Endpoints:
    """Where the servers are, from the settings and `infra.json`, without starting anything.

    Raises `InfraNotRunningError` when an embedded server the settings rely on is not running.
    """
    settings = _absolute_home(settings)
    records = read_records(settings.home)
    missing = [
        server.name
        for server in _embedded_servers(settings)
        if server.name not in records
        or not is_alive(records[server.name].pid, records[server.name].create_time)
    ]
    if missing:
        raise InfraNotRunningError(
            f"embedded infrastructure is not running ({', '.join(missing)}): run `cryptiq infra up`"
        )
    return _endpoints_from(settings, records)


def status(settings: Settings) -> list[ServiceStatus]:
    """One `ServiceStatus` per service (kafka, redis, postgres), each probed with a short timeout."""
    settings = _absolute_home(settings)
    records = read_records(settings.home)
    external = _external_urls(settings)

    async def gather() -> list[ServiceStatus]:
        checks = [
            _external_status(settings, name, external[name])
            if name in external
            else _embedded_status(settings, name, records.get(name))
            for name in SERVICES
        ]
        return list(await asyncio.gather(*checks))

    return _run(gather())


def down(settings: Settings) -> list[str]:
    """Stop the embedded servers recorded in `infra.json` (never external ones); idempotent.

    Returns the names of the servers that were running and are now stopped.
    """
    settings = _absolute_home(settings)
    if not state_path(settings.home).exists():
        return []
    servers = {server.name: server for server in _all_servers(settings)}
    stopped: list[str] = []
    with locked(settings.home):
        records = read_records(settings.home)
        for name in [name for name in SERVICES if name in records] + sorted(set(records) - set(SERVICES)):
            record = records[name]
            server = servers.get(name)
            was_running = (
                server.stop(record, STOP_TIMEOUT_S)
                if server is not None
                else terminate(record.pid, record.create_time, STOP_TIMEOUT_S)
            )
            if was_running:
                stopped.append(name)
                log.info("server_stopped", service=name, pid=record.pid)
            else:
                log.info("stale_server_forgotten", service=name, pid=record.pid)
            del records[name]
            write_records(settings.home, records)
    return stopped


# -- embedded servers ---------------------------------------------------------------------------


def _all_servers(settings: Settings) -> list[EmbeddedServer]:
    return [TansuBroker(settings), RedisServer(settings), PostgresServer(settings)]


def _embedded_servers(settings: Settings) -> list[EmbeddedServer]:
    external = _external_urls(settings)
    return [server for server in _all_servers(settings) if server.name not in external]


def _ensure_running(
    server: EmbeddedServer, records: dict[str, ServiceRecord], settings: Settings
) -> ServiceRecord:
    record = records.get(server.name)
    if record is not None:
        if is_alive(record.pid, record.create_time):
            _check_reused(server, record)
            log.info("server_reused", service=server.name, pid=record.pid, port=record.port)
            return record
        log.info("stale_server_forgotten", service=server.name, pid=record.pid)
        reap(record.pid)
        del records[server.name]
        write_records(settings.home, records)
    server.prepare()
    tried: list[int] = []
    while len(tried) < _PORT_ATTEMPTS:
        port = free_port()
        tried.append(port)
        record = _start(server, port, records, settings)
        if record is not None:
            return record
    raise PortInUseError(
        f"{server.name} could not bind 127.0.0.1 ports {tried}, each taken by another process "
        "as it started: find what grabs ports (ss -ltnp) and run `cryptiq infra up` again"
    )


def _check_reused(server: EmbeddedServer, record: ServiceRecord) -> None:
    try:
        _run(server.probe(record.url, PROBE_TIMEOUT_S))
    except PROBE_ERRORS as exc:
        raise ServerStartError(
            f"{server.name} (pid {record.pid}) runs but does not answer ({_describe(exc)}): "
            f"read {record.log}, then run `cryptiq infra down` and `cryptiq infra up`"
        ) from None


def _start(
    server: EmbeddedServer, port: int, records: dict[str, ServiceRecord], settings: Settings
) -> ServiceRecord | None:
    """Start `server` on `port`; None if another process took the port first (try another)."""
    log_file = log_path(settings.home, server.name)
    started = time.monotonic()
    spawned = spawn(server.launch(port), log_file)
    record = ServiceRecord(
        pid=spawned.pid,
        create_time=spawned.create_time,
        port=port,
        url=server.url(port),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log=str(log_file),
    )
    # Recorded before it is ready, so `down` can stop it even if this process is interrupted.
    records[server.name] = record
    write_records(settings.home, records)
    try:
        _run(_wait_ready(server, record))
        _run(server.finish(record.url))
    except (ServerStartError, *PROBE_ERRORS) as exc:
        server.stop(record, STOP_TIMEOUT_S)
        del records[server.name]
        write_records(settings.home, records)
        if not port_is_free(port):
            log.warning("port_taken", service=server.name, port=port)
            return None
        if isinstance(exc, ServerStartError):
            raise
        raise ServerStartError(
            f"{server.name} started but its set-up failed ({_describe(exc)}): read {log_file}"
        ) from exc
    log.info(
        "server_started",
        service=server.name,
        pid=record.pid,
        port=port,
        seconds=round(time.monotonic() - started, 3),
    )
    return record


async def _wait_ready(server: EmbeddedServer, record: ServiceRecord) -> None:
    deadline = time.monotonic() + server.start_timeout_s
    log_file = record.log
    while True:
        if not is_alive(record.pid, record.create_time):
            raise ServerStartError(
                f"{server.name} exited right after starting: read {log_file} "
                f"(last line: {last_line(Path(log_file))})"
            )
        try:
            await server.probe(record.url, PROBE_TIMEOUT_S)
        except PROBE_ERRORS as exc:
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{server.name} did not answer within {server.start_timeout_s:.0f}s "
                    f"({_describe(exc)}): read {log_file} (last line: {last_line(Path(log_file))})"
                ) from None
        else:
            return
        await asyncio.sleep(_POLL_INTERVAL_S)


async def _embedded_status(settings: Settings, name: str, record: ServiceRecord | None) -> ServiceStatus:
    if record is None:
        return ServiceStatus(name, "embedded", "-", None, False, "not running: run `cryptiq infra up`")
    def down(why: str) -> ServiceStatus:
        return ServiceStatus(name, "embedded", redact_url(record.url), record.pid, False, why)

    if not is_alive(record.pid, record.create_time):
        return down(f"exited: read {record.log} (last line: {last_line(Path(record.log))})")
    try:
        await _probe_of(settings, name)(record.url, PROBE_TIMEOUT_S)
    except PROBE_ERRORS as exc:
        return down(f"running but not answering ({_describe(exc)}): read {record.log}")
    return ServiceStatus(name, "embedded", redact_url(record.url), record.pid, True, f"log {record.log}")


# -- external servers ---------------------------------------------------------------------------


def _external_urls(settings: Settings) -> dict[str, str]:
    configured = {
        "kafka": settings.kafka.bootstrap,
        "redis": reveal(settings.redis.url),
        "postgres": reveal(settings.postgres.url),
    }
    return {name: url for name, url in configured.items() if url}


def _setting_hint(name: str) -> str:
    section, key = _SETTING_KEYS[name]
    return f"{section}.{key} ({env_name((section, key))})"


def _require_external(settings: Settings, name: str, url: str) -> None:
    if name == "postgres" and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"postgres.url must start with postgresql://, got {redact_url(url)}: fix {_setting_hint(name)}"
        )
    try:
        _run(_probe_of(settings, name)(url, PROBE_TIMEOUT_S))
    except PROBE_ERRORS as exc:
        raise ServerNotAnsweringError(
            f"external {name} at {redact_url(url)} is not answering ({_describe(exc)}): "
            f"start it or fix {_setting_hint(name)}"
        ) from None


async def _external_status(settings: Settings, name: str, url: str) -> ServiceStatus:
    where = redact_url(url)
    try:
        await _probe_of(settings, name)(url, PROBE_TIMEOUT_S)
    except PROBE_ERRORS as exc:
        return ServiceStatus(
            name,
            "external",
            where,
            None,
            False,
            f"not answering ({_describe(exc)}): start it or fix {_setting_hint(name)}",
        )
    return ServiceStatus(name, "external", where, None, True, f"set by {_setting_hint(name)}")


# -- helpers ------------------------------------------------------------------------------------


def _probe_of(settings: Settings, name: str) -> Callable[[str, float], Awaitable[None]]:
    if name == "kafka":
        return lambda url, timeout_s: probe_kafka(settings.kafka, url, timeout_s)
    if name == "redis":
        return probe_redis
    return probe_postgres


def _endpoints_from(settings: Settings, records: dict[str, ServiceRecord]) -> Endpoints:
    external = _external_urls(settings)

    def url_of(name: str) -> str:
        return external[name] if name in external else records[name].url

    return Endpoints(
        kafka_bootstrap=url_of("kafka"),
        redis_url=url_of("redis"),
        postgres_url=url_of("postgres"),
        kafka_embedded="kafka" not in external,
        redis_embedded="redis" not in external,
        postgres_embedded="postgres" not in external,
    )


def _absolute_home(settings: Settings) -> Settings:
    # Servers run with their data directory as working directory, so every path must be absolute.
    home = settings.home.expanduser().resolve()
    return settings if home == settings.home else settings.model_copy(update={"home": home})


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion on a fresh event loop in a worker thread.

    A worker thread, because the caller may be inside a running loop (an async test, an agent)
    and `asyncio.run` would refuse or replace the caller's current loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryptiq-infra") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
