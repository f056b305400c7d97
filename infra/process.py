"""Detached server processes: spawn, recognise, stop, pick ports, read log tails.

A server is started in its own session so it outlives the `cryptiq infra up` process and
ignores the terminal's Ctrl-C. A process is recognised by pid *and* creation time, so a pid
reused by an unrelated program after a reboot is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.system_user import run_as

LOOPBACK = "127.0.0.1"
# Creation times come from /proc with clock-tick precision; allow for rounding.
_CREATE_TIME_TOLERANCE_S = 1.0
_EXIT_POLL_S = 0.02

# Servers spawned by *this* Python process. Keeping the Popen alive stops its finaliser from
# warning "subprocess is still running", and lets `stop` reap the child so no zombie is left
# behind when servers are started and stopped in the same process (the test session).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Launch:
    """How to run one server: the command, and optionally an environment, user and directory."""

    command: Sequence[str]
    cwd: Path
    env: Mapping[str, str] | None = None
    user: str | None = None


@dataclass(frozen=True)
class Spawned:
    """A started process: its pid and the creation time that identifies it."""

    pid: int
    create_time: float


def spawn(launch: Launch, log_path: Path) -> Spawned:
    """Start `launch` detached, appending its stdout and stderr to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(launch.command),
            cwd=launch.cwd,
            env=dict(launch.env) if launch.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as(launch.user),
        )
    _children[popen.pid] = popen
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0
    return Spawned(pid=popen.pid, create_time=create_time)


def is_alive(pid: int, create_time: float) -> bool:
    """Whether `pid` is still the process that was started at `create_time` (zombies are dead)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > _CREATE_TIME_TOLERANCE_S:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def wait_exit(pid: int, create_time: float, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the process to exit; reap it if it is our child. True if gone."""
    popen = _children.get(pid)
    if popen is not None:
        try:
            popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        _children.pop(pid, None)
        return True
    # Not our child: poll, counting a zombie as gone (its parent, often PID 1, may reap it late).
    deadline = time.monotonic() + timeout_s
    while is_alive(pid, create_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(_EXIT_POLL_S)
    return True


def terminate(pid: int, create_time: float, timeout_s: float) -> bool:
    """SIGTERM the process, then SIGKILL it if it has not exited after `timeout_s`.

    Returns False if the process was not running (nothing was signalled).
    """
    if not is_alive(pid, create_time):
        reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_exit(pid, create_time, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_exit(pid, create_time, timeout_s)
    return True


def reap(pid: int) -> None:
    """Collect the exit status of a child of ours that has already exited, if any."""
    popen = _children.pop(pid, None)
    if popen is not None:
        popen.poll()


def exit_code(pid: int) -> int | None:
    """The exit code of a child we spawned that has exited, else None."""
    popen = _children.get(pid)
    return popen.poll() if popen is not None else None


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether nothing listens on LOOPBACK:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def last_line(log_path: Path, max_bytes: int = 8192) -> str:
    """The last non-empty line of a log file, or a note that it is empty or missing."""
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            tail = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log written)"
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else "(log is empty)"
