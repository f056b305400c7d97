"""Hosting the ops API in a running event loop: `ApiServer` (start/stop) and `serve` (until stopped).

uvicorn runs inside the caller's loop, so `cryptiq run` hosts the API next to the agents. The
socket is bound here, before uvicorn starts, so a busy port is a one-line `ConfigError` (uvicorn
itself would call `sys.exit`) and port 0 picks a free port that `url` then reports. uvicorn's
own signal handlers are off: the process that hosts the API owns SIGINT and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn

from config.errors import ConfigError
from config.settings import Settings
from infra.endpoints import Endpoints
from orchestrator.api.app import create_app
from orchestrator.api.auth import Clock
from orchestrator.api.deps import wall_clock

log = structlog.get_logger("cryptiq.api")
STARTUP_TIMEOUT_S = 60.0  # migrations on a cold Postgres are the slow part


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the host process handles signals and calls ApiServer.stop()


class ApiServer:
    """The API on `host:port` inside the current event loop."""

    def __init__(
        self, settings: Settings, endpoints: Endpoints, *, host: str | None = None, port: int | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        self.host = host if host is not None else settings.api.host
        self.port = port if port is not None else settings.api.port
        self.app = create_app(settings, endpoints, clock=clock)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, run the app's start-up (migrations, clients) and return once it answers."""
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on")
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api-server")
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():  # start-up failed: surface its error
                    self._task.result()
                    raise ConfigError("the ops API stopped during start-up; see the log above")
                await asyncio.sleep(0.05)
        log.info("api_listening", url=self.url)

    async def stop(self) -> None:
        """Finish requests in flight, run the app's shutdown, close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def wait(self) -> None:
        """Until the server stops (it stops on `stop()`)."""
        if self._task is not None:
            await asyncio.shield(self._task)


async def serve(
    settings: Settings, endpoints: Endpoints, *, host: str | None = None, port: int | None = None,
    ready: asyncio.Event | None = None, stopping: asyncio.Event | None = None,
) -> None:
    """Run the API until `stopping` is set or the task is cancelled; set `ready` once it answers."""
    server = ApiServer(settings, endpoints, host=host, port=port)
    await server.start()
    if ready is not None:
        ready.set()
    try:
        await (stopping.wait() if stopping is not None else asyncio.Event().wait())
    finally:
        await server.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the ops API cannot listen on {host}:{port} ({exc.strerror}): set api.port "
                          "(CRYPTIQ_API_PORT) to a free port or stop what uses it") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
