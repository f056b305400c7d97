"""Users of the ops API: name, role, password hash and TOTP secret (table `api_users`).

Passwords are stored as scrypt hashes (stdlib `hashlib.scrypt`, a random salt per user) in the
self-describing form `scrypt$n$r$p$salt$hash`, so the cost can be raised later without breaking
stored hashes. The TOTP secret (RFC 6238, base32) is stored as is: the server needs it to check
codes. Whoever can read this table can mint codes, so the database is the trust boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Boolean, DateTime, Text, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import DomainError
from memory.database import translate_errors
from memory.models import Base

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
USER_NAME = r"^[A-Za-z0-9_.@-]{1,64}$"
MIN_PASSWORD_LENGTH = 8

# scrypt cost: 2**14 x 8 x 1 takes ~50 ms and 16 MiB, OWASP's minimum for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


class ApiUserRow(Base):
    """One user of the ops API."""

    __tablename__ = "api_users"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    role: Mapped[str] = mapped_column(Text, nullable=False, comment="viewer, operator or admin")
    password_hash: Mapped[str] = mapped_column(Text, nullable=False, comment="scrypt$n$r$p$salt$hash")
    totp_secret: Mapped[str] = mapped_column(Text, nullable=False, comment="base32 RFC 6238 secret")
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UserExistsError(DomainError):
    """A user with that name is already there."""


class ApiUser(BaseModel):
    """A user as the API sees it (the password hash never leaves `UserStore`)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    name: str = Field(pattern=USER_NAME)
    role: Role
    totp_secret: str = Field(repr=False)
    disabled: bool = False
    created_at: datetime | None = None


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` of `password` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            maxmem=_SCRYPT_MAXMEM)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` hashes to `stored` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(expected))
    except ValueError:  # a malformed stored hash matches nothing
        return False
    return hmac.compare_digest(got, expected)


def new_totp_secret() -> str:
    """A random 160-bit base32 secret, the size RFC 4226 recommends (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# A hash of a random password: logins of unknown users spend the same time as real ones, so
# response times do not tell which names exist.
_DECOY_HASH = hash_password(secrets.token_urlsafe(16))


class UserStore:
    """Reads and writes `api_users` on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, name: str, role: Role, password: str) -> ApiUser:
        """Create a user with a new TOTP secret; `UserExistsError` if the name is taken."""
        if not re.fullmatch(USER_NAME, name):
            raise DomainError(f"user name {name!r} is not allowed: use 1-64 letters, digits, _ . @ -")
        if role not in ROLES:
            raise DomainError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise DomainError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        row = {"name": name, "role": role, "password_hash": hash_password(password),
               "totp_secret": new_totp_secret()}
        statement = insert(ApiUserRow).values(row).on_conflict_do_nothing(index_elements=["name"])
        async with self._begin() as conn:
            created = (await conn.execute(statement.returning(ApiUserRow.name))).first()
        if created is None:
            raise UserExistsError(f"user {name!r} exists already: pick another name")
        user = await self.get(name)
        assert user is not None
        return user

    async def get(self, name: str) -> ApiUser | None:
        """The user called `name`, or None."""
        async with self._begin() as conn:
            row = (await conn.execute(_select_user().where(ApiUserRow.name == name))).first()
        return None if row is None else ApiUser.model_validate(row._mapping)

    async def authenticate(self, name: str, password: str) -> ApiUser | None:
        """The user if `password` is theirs and they are not disabled, else None."""
        async with self._begin() as conn:
            row = (await conn.execute(
                select(ApiUserRow.password_hash).where(ApiUserRow.name == name)
            )).first()
        if row is None:
            check_password(password, _DECOY_HASH)
            return None
        if not check_password(password, row.password_hash):
            return None
        user = await self.get(name)
        return user if user is not None and not user.disabled else None

    async def list(self) -> list[ApiUser]:
        """Every user, by name."""
        async with self._begin() as conn:
            rows = (await conn.execute(_select_user().order_by(ApiUserRow.name))).all()
        return [ApiUser.model_validate(row._mapping) for row in rows]

    async def set_password(self, name: str, password: str) -> bool:
        """Give a user a new password; False if there is no such user."""
        if len(password) < MIN_PASSWORD_LENGTH:
            raise DomainError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        statement = (update(ApiUserRow).where(ApiUserRow.name == name)
                     .values(password_hash=hash_password(password)))
        async with self._begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (or enable) a user; False if there is no such user."""
        statement = update(ApiUserRow).where(ApiUserRow.name == name).values(disabled=disabled)
        async with self._begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a server that is away raises `RetriableError` (see memory.database)."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn


def _select_user():  # type: ignore[no-untyped-def]
    return select(ApiUserRow.name, ApiUserRow.role, ApiUserRow.totp_secret, ApiUserRow.disabled,
                  ApiUserRow.created_at)
