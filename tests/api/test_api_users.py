"""Users of the ops API: password hashes, the user store, the migration, and `cryptiq api` itself."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import infra
from config import Settings
from config.errors import ConfigError, DomainError
from memory.users import UserExistsError, UserStore, check_password, hash_password

CRYPTIQ = Path(sys.executable).parent / "cryptiq"


def test_password_hashes_are_salted_and_checked() -> None:
    first, second = hash_password("s3cret-enough"), hash_password("s3cret-enough")
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$")
    assert check_password("s3cret-enough", first)
    assert not check_password("s3cret-enougH", first)
    assert not check_password("s3cret-enough", "garbage")


async def test_the_user_store_adds_authenticates_and_disables(engine: Any) -> None:
    store = UserStore(engine)
    user = await store.add("dora", "operator", "long enough pw")
    assert (user.name, user.role, user.disabled) == ("dora", "operator", False)
    assert len(user.totp_secret) == 32
    with pytest.raises(UserExistsError, match="exists already"):
        await store.add("dora", "viewer", "long enough pw")
    with pytest.raises(DomainError, match="role"):
        await store.add("eve", "root", "long enough pw")  # type: ignore[arg-type]
    with pytest.raises(DomainError, match="at least 8"):
        await store.add("eve", "viewer", "short")
    with pytest.raises(DomainError, match="not allowed"):
        await store.add("eve smith", "viewer", "long enough pw")
    assert await store.authenticate("dora", "long enough pw") == user
    assert await store.authenticate("dora", "wrong") is None
    assert await store.authenticate("nobody", "long enough pw") is None
    assert await store.set_disabled("dora", True)
    assert await store.authenticate("dora", "long enough pw") is None
    assert not await store.set_disabled("nobody", True)


async def test_the_api_users_table_matches_its_model(engine: Any) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from memory.models import Base

    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert [d for d in differences if "api_users" in repr(d)] == []


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(CRYPTIQ), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cryptiq_api_manages_users_and_serves(
    settings: Settings, endpoints: infra.Endpoints, fresh_db: str, engine: Any, kafka: dict[str, Any],
) -> None:
    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home), CRYPTIQ_POSTGRES_URL=fresh_db,
               CRYPTIQ_API_JWT_SECRET="cli-test-secret-cli-test-secret!", CRYPTIQ_LOG_FORMAT="json")
    code, out, err = await _cli(env, "api", "user", "add", "carol", "--role", "operator",
                                "--password", "carol's password")
    assert code == 0, err
    uri = re.search(r"otpauth://\S+", out)
    assert uri is not None, out
    secret = parse_qs(urlsplit(uri.group(0)).query)["secret"][0]
    stored = await UserStore(engine).get("carol")
    assert stored is not None
    assert stored.totp_secret == secret

    code, out, _ = await _cli(env, "api", "user", "list")
    assert code == 0
    assert re.search(r"carol\s+operator\s+active", out)

    code, _, err = await _cli(env, "api", "user", "add", "carol", "--password", "another password")
    assert code == 2
    assert err.startswith("error: user 'carol' exists already")

    server = await asyncio.create_subprocess_exec(
        str(CRYPTIQ), "api", "serve", "--host", "127.0.0.1", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url is not None, line
        async with httpx.AsyncClient(base_url=url.group(0)) as client:
            form = {"username": "carol", "password": "carol's password"}
            token = await client.post("/auth/token", data=form)
            assert token.status_code == 200, token.text
            me = await client.get("/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
            assert me.json()["role"] == "operator"
            page = await client.get("/")
            assert "CryptIQ" in page.text
            assert "default-src 'self'" in page.headers["content-security-policy"]
    finally:
        server.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.wait(), 30)
    assert code == 0


async def test_a_busy_port_is_a_config_error(settings: Settings, endpoints: infra.Endpoints) -> None:
    from orchestrator.api import ApiServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port} .*set api.port"):
            await ApiServer(settings, endpoints, host="127.0.0.1", port=port).start()


async def test_serve_answers_once_ready_and_returns_when_stopping_is_set(
    settings: Settings, endpoints: infra.Endpoints, kafka: dict[str, Any],
) -> None:
    from orchestrator.api import serve

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready, stopping = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, endpoints, host="127.0.0.1", port=port, ready=ready,
                                     stopping=stopping))
    await asyncio.wait_for(ready.wait(), 60)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/openapi.json")).status_code == 200
    stopping.set()
    await asyncio.wait_for(task, 30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/openapi.json")
