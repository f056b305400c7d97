"""Access control of the ops API: JWT access tokens, roles, the TOTP step and the login limit.

- `POST /auth/token` (OAuth2 password flow) checks the password and issues an HS256 JWT with the
  user's name and role that expires after `api.token_ttl_s`.
- Roles are ranked viewer < operator < admin; a route needs a role or a higher one.
- Sensitive actions (kill switch, strategy switch, agent pause) also need the current TOTP code
  of the user (RFC 6238, 30 s steps, one step of clock drift either way), each code once.
- Failed logins (and wrong TOTP codes) are limited per user and client: after
  `api.login_attempts` failures within `api.login_window_s`, further attempts are refused with
  429 until the oldest failure leaves the window.

Time comes from an injected clock (seconds since the epoch) so tests can expire tokens by hand.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import jwt
import pyotp

from memory.users import Role

Clock = Callable[[], float]  # seconds since the epoch (time.time)
TotpVerdict = Literal["ok", "wrong", "reused"]

ROLE_RANK: dict[Role, int] = {role: rank for rank, role in enumerate(get_args(Role))}
ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "jti"]


class AuthError(Exception):
    """A token that is missing, malformed, forged or expired (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, as their token says."""

    name: str
    role: Role
    expires_at: float

    def has(self, role: Role) -> bool:
        """Whether this principal's role is `role` or ranks above it."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class TokenIssuer:
    """Signs and checks access tokens with one secret and lifetime."""

    def __init__(self, secret: str, ttl_s: int, clock: Clock) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, name: str, role: Role) -> tuple[str, Principal]:
        """A signed token for `name` acting as `role`, and what it says."""
        now = self._clock()
        expires = int(now) + self.ttl_s
        claims = {"sub": name, "role": role, "iat": int(now), "exp": expires, "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), Principal(name, role, expires)

    def verify(self, token: str) -> Principal:
        """What a valid token says; `AuthError` if it is not valid now."""
        try:
            # Times are checked below against the injected clock, not pyjwt's own.
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={
                "verify_exp": False, "verify_iat": False, "require": _REQUIRED_CLAIMS,
            })
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        role = claims["role"]
        if role not in ROLE_RANK or not isinstance(claims["sub"], str):
            raise AuthError("invalid token: unknown role or subject")
        if not isinstance(claims["exp"], int) or claims["exp"] <= self._clock():
            raise AuthError("token expired: log in again")
        return Principal(claims["sub"], role, claims["exp"])


def totp_step(secret: str, code: str | None, now: float) -> int | None:
    """The 30 s step whose TOTP code `code` is (now's, or one step either side), else None."""
    if not code or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(int(now))
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


class TotpGuard:
    """Checks TOTP codes and accepts each user's code at most once (RFC 6238 section 5.2).

    A code seen on the wire (a shoulder, a proxy log) cannot authorise a second action: after a
    code of step S is used, only codes of later steps are accepted for that user.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last_step: dict[str, int] = {}

    def check(self, user: str, secret: str, code: str | None) -> TotpVerdict:
        step = totp_step(secret, code, self._clock())
        if step is None:
            return "wrong"
        if step <= self._last_step.get(user, -1):
            return "reused"
        self._last_step[user] = step
        return "ok"


class AttemptLimiter:
    """At most `attempts` failures per key within a sliding `window_s`; in memory, per process."""

    def __init__(self, attempts: int, window_s: float, clock: Clock) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None if it may try now."""
        failures = self._prune(key)
        if not failures:
            self._failures.pop(key, None)  # keys of clients that stopped failing do not pile up
        if len(failures) < self.attempts:
            return None
        return max(0.0, failures[0] + self.window_s - self._clock())

    def failed(self, key: str) -> None:
        self._prune(key).append(self._clock())

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _prune(self, key: str) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures
