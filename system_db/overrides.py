"""Marketers' overrides of the policy's settings, and their audit trail.

An override replaces one field of ``serving.policy`` (:class:`core.config.PolicySettings`): disable an
event type, cap a reward, pin a segment to an arm, change the budget, the exploration or the holdout
share. Every change is checked against the whole settings before it is stored (a bad value is refused
with the field's own error), and audited in the same transaction: who, when, the value before and after.
Running services read the table every few seconds, so a change is in force without a restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from pydantic import ValidationError

from core.config import PolicySettings
from core.errors import RekindleError
from platform_db.db import read_sql
from system_db.store import SystemStore


class OverrideError(RekindleError, ValueError):
    """An override names an unknown field or a value the settings refuse."""


def overrides_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "policy_overrides",
        md,
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),  # JSON
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        keep_existing=True,
    )


def audit_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "policy_overrides_audit",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("who", sa.String(64), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("before", sa.Text, nullable=True),  # JSON; null: the configured value was in force
        sa.Column("after", sa.Text, nullable=True),  # JSON; null: the override was cleared
        keep_existing=True,
    )


FIELDS = tuple(PolicySettings.model_fields)


def merged(base: PolicySettings, overrides: dict[str, Any]) -> PolicySettings:
    """``base`` with ``overrides`` applied, validated as a whole."""
    try:
        return PolicySettings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        raise OverrideError(f"the overrides {overrides} are not valid settings: {exc}") from None


class Overrides:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.table = overrides_table(store.metadata)
        self.audit = audit_table(store.metadata)
        store.ensure()

    def read(self) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            return {
                r.field: json.loads(r.value) for r in conn.execute(sa.select(self.table.c.field, self.table.c.value))
            }

    def version(self) -> str:
        """Changes whenever an override does: the latest audit id."""
        with self.store.engine.connect() as conn:
            return str(conn.execute(sa.select(sa.func.max(self.audit.c.id))).scalar() or 0)

    def set(self, field: str, value: Any, *, who: str, base: PolicySettings) -> PolicySettings:
        """Override ``field`` with ``value`` (``None`` clears it); returns the settings now in force."""
        if field not in FIELDS:
            raise OverrideError(f"unknown setting {field!r}; expected one of {list(FIELDS)}")
        now = datetime.now(UTC).replace(tzinfo=None)
        t = self.table
        with self.store.engine.begin() as conn:
            current = {r.field: json.loads(r.value) for r in conn.execute(sa.select(t.c.field, t.c.value))}
            before = current.get(field)
            if value is None:
                current.pop(field, None)
            else:
                current[field] = value
            settings = merged(base, current)  # refuses a bad value before anything is written
            conn.execute(sa.delete(t).where(t.c.field == field))
            after = None
            if value is not None:
                after = json.dumps(getattr(settings, field) if not isinstance(value, dict | list) else value)
                conn.execute(sa.insert(t).values(field=field, value=after, updated_at=now, updated_by=who))
            conn.execute(
                sa.insert(self.audit).values(
                    at=now, who=who, field=field, before=None if before is None else json.dumps(before), after=after
                )
            )
        return settings

    def history(self) -> pd.DataFrame:
        return read_sql(self.store.engine, sa.select(self.audit).order_by(self.audit.c.id))
