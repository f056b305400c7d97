"""`cryptiq api`: serve the ops API and dashboard; `cryptiq api user ...`: manage who may use it.

`cryptiq api` alone serves on `api.host:api.port` (same as `cryptiq api serve`); the servers must
be up (`cryptiq infra up`). Users are created with a role and get a TOTP secret, printed once as
an otpauth:// URI to scan into an authenticator app: operators need its codes for commands.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from config import Settings

app = typer.Typer(invoke_without_command=True)
users = typer.Typer(no_args_is_help=True)
app.add_typer(users, name="user", help="Add, list and disable users of the ops API.")

ISSUER = "CryptIQ"  # the name authenticator apps show next to the code


@app.callback()
def _default(ctx: typer.Context) -> None:
    """Serve the ops API and dashboard (what `cryptiq api serve` does with the configured host and port)."""
    if ctx.invoked_subcommand is None:
        _serve(settings_of(ctx), host=None, port=None)


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: api.port; 0: a free one).")] = None,
) -> None:
    """Serve the ops API (JSON + OpenAPI at /docs) and the dashboard at / until Ctrl-C or SIGTERM."""
    if port is not None and not 0 <= port <= 65535:
        raise fail(f"--port {port} is not a TCP port: use 0-65535")
    _serve(settings_of(ctx), host=host, port=port)


def _serve(settings: Settings, *, host: str | None, port: int | None) -> None:
    import infra
    from orchestrator.api import ApiServer

    endpoints = infra.endpoints(settings)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        server = ApiServer(settings, endpoints, host=host, port=port)
        await server.start()
        typer.echo(f"ops API and dashboard on {server.url} (OpenAPI: {server.url}/docs); Ctrl-C stops it")
        try:
            await stopping.wait()
        finally:
            await server.stop()

    asyncio.run(main())


@users.command("add")
def add_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    role: Annotated[str, typer.Option(help="viewer (read), operator (read + commands with TOTP) or admin.")]
    = "viewer",
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          help="Asked for when not given (given here, it lands in shell "
                                          "history).")] = "",
) -> None:
    """Create a user; prints the TOTP secret once, as an otpauth:// URI for an authenticator app."""
    import pyotp

    from memory.users import ROLES

    if role not in ROLES:
        raise fail(f"--role {role!r} is not valid: use {', '.join(ROLES)}")
    user = asyncio.run(_add(settings_of(ctx), name, role, password))
    uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.name, issuer_name=ISSUER)
    typer.echo(f"user {user.name} ({user.role}) created")
    typer.echo(f"TOTP (scan or paste into an authenticator app; shown only now): {uri}")


@users.command("list")
def list_users(ctx: typer.Context) -> None:
    """List the users: name, role, disabled, created."""
    found = asyncio.run(_list(settings_of(ctx)))
    if not found:
        typer.echo("no users yet: add one with `cryptiq api user add NAME --role operator`")
        return
    for user in found:
        created = user.created_at.strftime("%Y-%m-%d %H:%M UTC") if user.created_at else "-"
        state = "disabled" if user.disabled else "active"
        typer.echo(f"{user.name:24} {user.role:9} {state:9} {created}")


@users.command("disable")
def disable_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user to disable.")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again instead.")] = False,
) -> None:
    """Disable a user: no new logins, no commands (tokens already issued still read until they expire)."""
    if not asyncio.run(_set_disabled(settings_of(ctx), name, not enable)):
        raise fail(f"no user {name!r}: see `cryptiq api user list`")
    typer.echo(f"user {name} {'enabled' if enable else 'disabled'}")


async def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    import infra
    from memory.database import create_engine
    from memory.migrations import upgrade

    url = infra.endpoints(settings).postgres_url
    await upgrade(url)
    return create_engine(url)


async def _add(settings: Settings, name: str, role: str, password: str):  # type: ignore[no-untyped-def]
    from memory.audit import AuditEntry, AuditTrail
    from memory.users import UserStore

    engine = await _engine(settings)
    try:
        user = await UserStore(engine).add(name, role, password)  # type: ignore[arg-type]
        await AuditTrail(engine).record(AuditEntry(ts=_now_ms(), actor="cli", action="user.add",
                                                   detail={"name": name, "role": role}))
        return user
    finally:
        await engine.dispose()


async def _list(settings: Settings):  # type: ignore[no-untyped-def]
    from memory.users import UserStore

    engine = await _engine(settings)
    try:
        return await UserStore(engine).list()
    finally:
        await engine.dispose()


async def _set_disabled(settings: Settings, name: str, disabled: bool) -> bool:
    from memory.audit import AuditEntry, AuditTrail
    from memory.users import UserStore

    engine = await _engine(settings)
    try:
        changed = await UserStore(engine).set_disabled(name, disabled)
        if changed:
            await AuditTrail(engine).record(AuditEntry(
                ts=_now_ms(), actor="cli", action="user.disable" if disabled else "user.enable",
                detail={"name": name},
            ))
        return changed
    finally:
        await engine.dispose()


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000  # a CLI action happens now, at the boundary
