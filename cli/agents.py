"""`cryptiq agent NAME` (one agent per process) and `cryptiq run` (every agent in one process).

Both run until SIGTERM or Ctrl-C, then drain the batch in hand, commit and leave their groups.
Each agent has its own consumer group (its name), so running `echo` alone in one process and
inside `cryptiq run` in another shares its work instead of doing it twice. The exit code is 0
after a clean stop and 1 when an agent crashed (its uncommitted input is read again on restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from agents.runtime import AgentHost
    from config import Settings
    from infra import Endpoints

READY_TIMEOUT_S = 30.0


def agent(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The agent to run (see `cryptiq agent --list`).")] = "",
    list_: Annotated[bool, typer.Option("--list", help="List the agents and exit.")] = False,
) -> None:
    """Run one agent in this process, consumer group = its name, until SIGTERM or Ctrl-C.

    The servers must be up (`cryptiq infra up`, or external ones in the config).
    """
    from agents.catalog import AGENTS, agent_class

    if list_ or not name:
        if not name and not list_:
            raise fail("name an agent to run, e.g. `cryptiq agent echo` (`--list` shows them all)")
        for known, cls in sorted(AGENTS.items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            typer.echo(f"{known:12} {doc}")
        return
    import infra

    cls = agent_class(name)
    settings = settings_of(ctx)
    raise typer.Exit(_serve(settings, infra.endpoints(settings), [cls]))


def run(
    ctx: typer.Context,
    agents: Annotated[
        str | None,
        typer.Option("--agents", help="Comma-separated agents to host (default: every agent)."),
    ] = None,
) -> None:
    """Bring the servers up (as `cryptiq infra up`), then host every agent in this process.

    Prints where the servers are and which agents are ready, then runs until SIGTERM or Ctrl-C.
    """
    from agents.catalog import AGENTS, agent_class
    from cli.infra import bring_up

    names = [part.strip() for part in agents.split(",") if part.strip()] if agents else sorted(AGENTS)
    classes = [agent_class(name) for name in names]
    settings = settings_of(ctx)
    endpoints = bring_up(settings)
    raise typer.Exit(_serve(settings, endpoints, classes))


def _serve(settings: Settings, endpoints: Endpoints, classes: list[type]) -> int:
    from agents.runtime import AgentHost

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        hosts: list[AgentHost] = [AgentHost(cls, settings, endpoints) for cls in classes]
        started: list[AgentHost] = []
        healthy = True
        try:
            for host in hosts:
                await host.start()
                started.append(host)
            healthy = await _all_ready(hosts, stopping)
            if healthy and not stopping.is_set():
                waits = [asyncio.ensure_future(stopping.wait())]
                waits += [asyncio.ensure_future(host.crashed.wait()) for host in hosts]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
        finally:
            for host in reversed(started):
                await host.stop()
        crashed = [host for host in hosts if host.error is not None]
        for host in crashed:
            typer.secho(f"error: agent {host.name} crashed: {host.error}", err=True, fg=typer.colors.RED)
        return 0 if healthy and not crashed else 1

    return asyncio.run(main())


async def _all_ready(hosts: list[AgentHost], stopping: asyncio.Event) -> bool:
    """Report each agent's readiness; False if one crashed or timed out (True if stopped first)."""
    ready = asyncio.gather(*(host.wait_ready(READY_TIMEOUT_S) for host in hosts), return_exceptions=True)
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([ready, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not ready.done():  # stopped while joining: a clean stop, nothing to report
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        return True
    all_ready = True
    for host, outcome in zip(hosts, ready.result(), strict=True):
        if isinstance(outcome, float):
            topics = ", ".join(spec.name for spec in host.agent.consumes) if host.agent else ""
            typer.echo(f"agent {host.name} ready in {outcome:.1f} s (group {host.name}, consumes {topics})")
        elif isinstance(outcome, TimeoutError):
            all_ready = False
            typer.secho(
                f"error: agent {host.name} was not assigned partitions within {READY_TIMEOUT_S:.0f} s: "
                "check `cryptiq infra status` and the broker's log", err=True, fg=typer.colors.RED,
            )
        else:
            all_ready = False  # crashed: reported with the others on the way out
    if all_ready:
        typer.echo("running; Ctrl-C or SIGTERM drains, commits and stops")
    return all_ready
