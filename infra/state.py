"""`infra.json` under the CryptIQ home: which embedded servers run, with pid, port and URL.

Written atomically (write a sibling, then rename) and only while holding `infra.lock`, so two
`cryptiq infra up` runs at once cannot start two sets of servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.errors import InfraError

STATE_FILE = "infra.json"
LOCK_FILE = "infra.lock"
LOG_DIR = "logs"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ServiceRecord:
    """One embedded server as started: enough to reach it, recognise it and stop it."""

    pid: int
    create_time: float
    port: int
    url: str
    started_at: str
    log: str


def state_path(home: Path) -> Path:
    return home / STATE_FILE


def log_path(home: Path, service: str) -> Path:
    return home / LOG_DIR / f"{service}.log"


def read_records(home: Path) -> dict[str, ServiceRecord]:
    """The recorded servers by service name; empty if nothing was ever started here."""
    path = state_path(home)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InfraError(
            f"state file {path} cannot be read ({exc}): stop the servers it lists by hand and delete it"
        ) from exc
    services: dict[str, Any] = raw.get("services", {}) if isinstance(raw, dict) else {}
    try:
        return {name: ServiceRecord(**fields) for name, fields in services.items()}
    except TypeError as exc:
        raise InfraError(
            f"state file {path} has an unexpected layout ({exc}): stop its servers by hand and delete it"
        ) from exc


def write_records(home: Path, records: dict[str, ServiceRecord]) -> None:
    """Replace the state file with `records` (delete it when there are none)."""
    path = state_path(home)
    if not records:
        path.unlink(missing_ok=True)
        return
    body = {
        "version": _FORMAT_VERSION,
        "services": {name: asdict(record) for name, record in sorted(records.items())},
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Hold the home's lock file for the duration: one `up` or `down` at a time."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
