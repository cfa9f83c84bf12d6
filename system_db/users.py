"""The dashboard's users: a name, a role and a password stored as a scrypt hash.

Roles, each with what the one before it may do: ``viewer`` (read every page), ``marketer`` (also change
the campaign overrides), ``admin`` (also manage users and API keys). Passwords are hashed with scrypt
(RFC 7914, :func:`hashlib.scrypt`: memory-hard, with a random 16-byte salt per password); the stored form
``scrypt$n$r$p$salt$hash`` keeps its parameters, so they can be raised later without breaking old
passwords. A check against an unknown user still runs scrypt once, so the time taken does not tell
which names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa

from core.errors import RekindleError
from system_db.store import SystemStore

UserRole = Literal["viewer", "marketer", "admin"]
USER_ROLES: tuple[UserRole, ...] = ("viewer", "marketer", "admin")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MiB and ~50 ms a check on this machine's cores
MIN_PASSWORD = 10


class UserError(RekindleError, ValueError):
    """A bad user name, role or password, or an unknown user."""


def users_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "dashboard_users",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("disabled_at", sa.DateTime, nullable=True),
        keep_existing=True,
    )


@dataclass(frozen=True)
class User:
    name: str
    role: UserRole

    def may(self, role: UserRole) -> bool:
        """Whether this user has ``role`` or a higher one."""
        return USER_ROLES.index(self.role) >= USER_ROLES.index(role)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    n, r, p = SCRYPT["n"], SCRYPT["r"], SCRYPT["p"]
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


_DUMMY = hash_password("not a password of anyone", salt=b"\0" * 16)


class Users:
    """Create, disable and check the dashboard's users."""

    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.table = users_table(store.metadata)
        store.ensure()

    def create(self, name: str, role: str, password: str) -> User:
        if role not in USER_ROLES:
            raise UserError(f"unknown role {role!r}; expected one of {list(USER_ROLES)}")
        if not name or len(name) > 64 or not name.isprintable() or name != name.strip():
            raise UserError(f"a user's name is 1 to 64 printable characters without outer spaces, got {name!r}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"a password has at least {MIN_PASSWORD} characters, got {len(password)}")
        t = self.table
        with self.store.engine.begin() as conn:
            if conn.execute(sa.select(t.c.name).where(t.c.name == name)).first() is not None:
                raise UserError(f"user {name!r} exists already: see `rekindle users list`")
            conn.execute(
                sa.insert(t).values(
                    name=name, role=role, password=hash_password(password),
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )  # fmt: skip
        return User(name, role)  # type: ignore[arg-type]

    def disable(self, name: str) -> None:
        t = self.table
        with self.store.engine.begin() as conn:
            done = conn.execute(
                sa.update(t)
                .where(t.c.name == name, t.c.disabled_at.is_(None))
                .values(disabled_at=datetime.now(UTC).replace(tzinfo=None))
            )
        if done.rowcount != 1:
            raise UserError(f"no active user {name!r}: see `rekindle users list`")

    def list(self) -> list[dict[str, object]]:
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.role, t.c.created_at, t.c.disabled_at).order_by(t.c.name))
            return [dict(r) for r in rows.mappings()]

    def get(self, name: str) -> User | None:
        """The active user ``name``, or None."""
        t = self.table
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.role).where(t.c.name == name, t.c.disabled_at.is_(None))).first()
        return None if row is None else User(name, row.role)

    def check(self, name: str, password: str) -> User | None:
        """The active user whose password this is, else None (the same work either way)."""
        t = self.table
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.role, t.c.password).where(t.c.name == name, t.c.disabled_at.is_(None))
            ).first()
        ok = password_matches(password, row.password if row is not None else _DUMMY)
        return User(name, row.role) if ok and row is not None else None
