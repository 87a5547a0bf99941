"""API tokens and what each role may do.

Tokens are random (256 bits), shown once at creation and stored only as a SHA-256 digest: a
slow password hash buys nothing for a secret that cannot be guessed, and every request checks
one. Roles, from least to most:

- ``viewer``: read studies, trials and workers.
- ``worker``: claim trials and report on the ones it holds, nothing else; a worker token
  may be bound to worker ids (``--workers 'box1-*'``), and then acts only under those.
- ``user``: read, submit studies, control them (pause, stop, enqueue, fork, evaluate test).
- ``admin``: everything, including tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidInput, NotFound
from hpsearch.store.clock import utcnow
from hpsearch.store.db import Database
from hpsearch.store.models import ApiToken

Role = Literal["admin", "user", "worker", "viewer"]
Permission = Literal["read", "work", "submit", "admin"]
ROLES: tuple[Role, ...] = ("admin", "user", "worker", "viewer")

GRANTS: dict[Role, frozenset[Permission]] = {
    "viewer": frozenset({"read"}),
    "worker": frozenset({"work"}),
    "user": frozenset({"read", "submit"}),
    "admin": frozenset({"read", "work", "submit", "admin"}),
}

_PREFIX = "hps_"
# The worker ids a worker token may act under: one id, or a prefix ending in ``*``. Ids are
# the free text a worker chooses (host name, pid, slot), so the pattern allows what they do.
WORKERS_PATTERN = re.compile(r"^(\*|[^*\s]{1,199}\*?)$")


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: Role
    # A worker token's ``--workers`` pattern; None: any worker id (tokens made without one).
    workers: str | None = None

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def may_act_as(self, worker_id: str) -> bool:
        """Whether this token may claim and report under ``worker_id``."""
        return self.workers is None or covers(self.workers, worker_id)


def covers(pattern: str, worker_id: str) -> bool:
    """Whether a ``--workers`` pattern (an exact id, or a prefix ending in ``*``) names
    ``worker_id``."""
    if pattern.endswith("*"):
        return worker_id.startswith(pattern[:-1])
    return worker_id == pattern


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    name: str,
    role: str,
    token: str | None = None,
    workers: str | None = None,
) -> tuple[ApiToken, str]:
    """Stores a token's digest; returns the row and the token, which is never stored.

    ``token`` registers a value generated elsewhere (a deployment's env file) instead of a
    new random one; registering the same value again returns the existing row. ``workers``
    binds a worker token to the worker ids it may use (see :func:`covers`).
    """
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {list(ROLES)}, got {role!r}")
    if not name or len(name) > 100:
        raise InvalidInput("name", "must be 1 to 100 characters")
    if workers is not None:
        if role != "worker":
            raise InvalidInput("workers", "binds worker tokens only (--role worker)")
        if not WORKERS_PATTERN.match(workers):
            raise InvalidInput(
                "workers",
                "must be a worker id, or a prefix ending in * (e.g. 'box1-*'), of at most "
                f"200 characters without spaces; got {workers!r}",
            )
    if token is None:
        token = _PREFIX + secrets.token_urlsafe(32)
    elif not token.startswith(_PREFIX) or len(token) < len(_PREFIX) + 32:
        raise InvalidInput(
            "token",
            f"must start with {_PREFIX} and carry >= 32 random "
            "characters (e.g. hps_$(openssl rand -hex 32))",
        )
    existing = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest(token))).first()
    if existing is not None:
        if existing.role != role or existing.workers != workers:
            raise InvalidInput(
                "token",
                f"already registered with role {existing.role}"
                + (f" for workers {existing.workers!r}" if existing.workers else ""),
            )
        return existing, token
    row = ApiToken(
        name=name, role=role, token_hash=digest(token), created_at=utcnow(), workers=workers
    )
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal a presented token stands for, or ``None`` (unknown or revoked)."""
    if not token.startswith(_PREFIX):
        return None
    wanted = digest(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == wanted)).first()
    # The lookup is by digest; compare again in constant time so a near-miss is not faster.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    return Principal(row.id, row.name, row.role, row.workers)  # type: ignore[arg-type]


def any_tokens(session: Session) -> bool:
    """Whether authentication is on: a token was ever created. Revoked ones count too, so
    revoking every token locks the server (create a new one) instead of opening it to anyone
    who can reach it, perhaps on an address it was allowed to bind only because of them."""
    return session.scalars(select(ApiToken.id).limit(1)).first() is not None


def revoke(session: Session, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} does not exist")
    row.revoked_at = utcnow()


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


class Authenticator:
    """Checks presented tokens against the database, with a short cache.

    Every API request checks a token; caching the answer for ``ttl`` seconds keeps that off
    the database's back. The price: a revoked token keeps working for up to ``ttl`` seconds,
    and the first token created turns authentication on within ``ttl`` seconds.

    Only known tokens are cached, never a refusal: a token created a moment ago works at
    once, and a stream of made-up tokens cannot fill the cache and push out the real ones
    (each costs one indexed read, as it would without a cache).
    """

    def __init__(self, db: Database, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._enabled: tuple[float, bool] | None = None
        self._principals: dict[str, tuple[float, Principal]] = {}

    def answers_from_cache(self, token: str | None) -> bool:
        """Whether :meth:`enabled` and :meth:`authenticate` (of ``token``) would not need the
        database now: the caller may then ask them without leaving the event loop."""
        now = time.monotonic()
        if self._enabled is None or self._enabled[0] < now:
            return False
        if token is None or not self._enabled[1]:
            return True
        cached = self._principals.get(digest(token))
        return cached is not None and cached[0] >= now

    def enabled(self) -> bool:
        now = time.monotonic()
        if self._enabled is None or self._enabled[0] < now:
            with self.db.read() as s:
                self._enabled = (now + self.ttl, any_tokens(s))
        return self._enabled[1]

    def authenticate(self, token: str) -> Principal | None:
        now = time.monotonic()
        key = digest(token)
        cached = self._principals.get(key)
        if cached is None or cached[0] < now:
            with self.db.read() as s:
                principal = authenticate(s, token)
            if principal is None:
                self._principals.pop(key, None)  # revoked since it was cached
                return None
            cached = (now + self.ttl, principal)
            if len(self._principals) > 10_000:
                self._principals.clear()
            self._principals[key] = cached
        return cached[1]
