"""API keys of the service, stored hashed, each with a role.

A key reads ``rk_<key id>_<secret>``: the id finds the row, the secret (32 random bytes) is checked
against its SHA-256. A fast hash is enough for secrets this long (no dictionary to guess from); the
plain key is shown once, when it is created, and never stored. Roles: ``caller`` (ask for
recommendations) and ``admin`` (also change the marketers' overrides).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa

from core.errors import RekindleError
from system_db.store import SystemStore

Role = Literal["caller", "admin"]
ROLES: tuple[Role, ...] = ("caller", "admin")
PREFIX = "rk_"


class AccessError(RekindleError, ValueError):
    """A bad role or key name, or an unknown key id."""


def keys_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "api_keys",
        md,
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        keep_existing=True,
    )


@dataclass(frozen=True)
class Key:
    key_id: str
    name: str
    role: Role


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX) :].partition("_")
    return (key_id, secret) if sep and key_id and secret else None


class KeyRing:
    """Create, revoke and check keys. :meth:`hashes` is what a server caches between reloads."""

    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.table = keys_table(store.metadata)
        store.ensure()

    def create(self, name: str, role: str) -> tuple[Key, str]:
        """A new key; returns it and the plain key (shown once)."""
        if role not in ROLES:
            raise AccessError(f"unknown role {role!r}; expected one of {list(ROLES)}")
        if not name or len(name) > 64:
            raise AccessError(f"a key's name is 1 to 64 characters, got {name!r}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.insert(self.table).values(
                    key_id=key_id,
                    name=name,
                    role=role,
                    secret_sha256=_digest(secret),
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
        return Key(key_id, name, role), f"{PREFIX}{key_id}_{secret}"  # type: ignore[arg-type]

    def revoke(self, key_id: str) -> None:
        t = self.table
        with self.store.engine.begin() as conn:
            done = conn.execute(
                sa.update(t)
                .where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC).replace(tzinfo=None))
            )
        if done.rowcount != 1:
            raise AccessError(f"no active key with id {key_id!r}: see `rekindle keys list`")

    def list(self) -> list[dict[str, object]]:
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.key_id, t.c.name, t.c.role, t.c.created_at, t.c.revoked_at)).mappings()
            return [dict(r) for r in rows]

    def hashes(self) -> dict[str, tuple[str, Role, str]]:
        """Active keys: key id -> (secret's SHA-256, role, name)."""
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.key_id, t.c.secret_sha256, t.c.role, t.c.name).where(t.c.revoked_at.is_(None))
            )
            return {r.key_id: (r.secret_sha256, r.role, r.name) for r in rows}


def check(key: str | None, hashes: dict[str, tuple[str, Role, str]]) -> Key | None:
    """The key behind ``key`` if it is active and its secret matches, else None (constant-time compare)."""
    parts = split_key(key or "")
    if parts is None or parts[0] not in hashes:
        return None
    digest, role, name = hashes[parts[0]]
    return Key(parts[0], name, role) if hmac.compare_digest(digest, _digest(parts[1])) else None
