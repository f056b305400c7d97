"""`cryptiq`: the entry point. Each command group lives in its own module under `cli/`.

Errors that a user can fix (bad arguments, bad config, a server that will not start) print one
line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from config import CryptiqError, Settings, load_settings

app = typer.Typer(
    name="cryptiq",
    help="CryptIQ: an autonomous, event-driven, multi-agent crypto trading system on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class State:
    """What the top-level options decided, handed to every command through the typer context."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from agents.logs import configure_logging

            self._settings = load_settings(self.config_path)
            configure_logging(self._settings.log)  # stderr: stdout is for what commands print
        return self._settings


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file (else $CRYPTIQ_CONFIG).", envvar=None),
    ] = None,
) -> None:
    ctx.obj = State(config)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of this invocation, read once (defaults < YAML < environment)."""
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state.settings


def _register() -> None:
    from cli import (
        agents,
        api,
        backtest,
        compare,
        data,
        indicators,
        infra,
        ladder,
        optimize,
        pnl,
        recording,
        risk,
        scan,
        topics,
        train,
    )

    app.command("agent")(agents.agent)
    app.command("run")(agents.run)
    app.command("scan")(scan.scan)
    app.command("record")(recording.record)
    app.command("replay")(recording.replay)
    app.command("indicators")(indicators.indicators)
    app.command("ladder")(ladder.ladder)
    app.command("pnl")(pnl.pnl)
    app.command("backtest")(backtest.backtest)
    app.command("compare")(compare.compare)
    app.command("optimize")(optimize.optimize)

    app.add_typer(infra.app, name="infra", help="Start, inspect and stop Kafka, Redis and Postgres.")
    app.add_typer(topics.app, name="topics", help="List topics and print their JSON Schemas.")
    app.add_typer(data.app, name="data", help="Import candle files into the local store and list them.")
    app.add_typer(train.app, name="train", help="Train models on candle files and register new versions.")
    app.add_typer(api.app, name="api", help="Serve the ops API and dashboard; manage its users.")
    app.add_typer(risk.app, name="kill-switch",
                  help="Engage, release or show the kill switch (cancels open orders, blocks new ones).")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error for the user and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def main() -> None:
    """Console-script entry: run the app, turning our errors into one-line messages."""
    _register()
    try:
        code = app(standalone_mode=False)
    except CryptiqError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)

    except typer.TyperException as exc:  # usage errors arrive here in non-standalone mode
        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "cryptiq"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.secho(f"error: {message} (see '{command} --help')", err=True, fg=typer.colors.RED)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
