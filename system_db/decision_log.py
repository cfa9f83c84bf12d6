"""The decision log: every decision the system made (online and batch), written before it is announced.

One row per decision, with what the later evaluation needs to stay unbiased: the arm, the probability
the policy had of choosing it (``propensity``), whether it was an exploration draw or a holdout, the
model and policy versions. An online call with a caller's request id is idempotent: the pair (caller,
request id) is unique, and a retry returns the stored response instead of deciding again. The online
reward budget is reserved in the same transaction as the decision is written, so a budget is never
overrun and a decision never lost to a crash between the two.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from platform_db.db import bulk_insert, read_sql
from system_db.store import SystemStore

NO_OFFER = "none"
OFFERED = sa.text(f"event_type != '{NO_OFFER}'")


def decisions_table(md: sa.MetaData) -> sa.Table:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Table(
        "decisions",
        md,
        sa.Column("decision_id", sa.String(36), primary_key=True),
        sa.Column("caller", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("player_id", big, nullable=False),
        sa.Column("decided_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),  # online | batch
        sa.Column("segment", sa.String(64), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("reward", sa.BigInteger, nullable=False),
        sa.Column("propensity", sa.Float, nullable=False),
        sa.Column("explored", sa.Boolean, nullable=False),
        sa.Column("holdout", sa.Boolean, nullable=False),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("expected_cost", sa.Float, nullable=True),
        sa.Column("incremental_net_value", sa.Float, nullable=True),
        sa.Column("incremental_reengage", sa.Float, nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("response", sa.Text, nullable=True),  # the JSON answered online, returned again on a retry
        # the arm the policy would have sent without exploration or the holdout: a held-out row's is what the
        # offered rows of that arm are compared with (realised against predicted, in feedback); null on logs
        # written before it was recorded
        sa.Column("policy_arm", sa.String(130), nullable=True),
        # the experiment running when the decision was made and the player's variant in it (its exposure)
        sa.Column("experiment", sa.String(64), nullable=True),
        sa.Column("variant", sa.String(16), nullable=True),  # the JSON answered online, returned again on a retry
        sa.UniqueConstraint("caller", "request_id", name="decisions_caller_request_id"),
        sa.Index("decisions_player_time", "player_id", "decided_at"),
        # a batch's decisions, and the latest batch (the dashboard's overview and arm mix, feedback)
        sa.Index("decisions_source_time", "source", "decided_at"),
        # the offers alone: the frequency cap's "last offer" of a player does not walk the no-offer rows that
        # every call for a capped player logs (SQLite uses a partial index for the literal term only)
        sa.Index("decisions_offers", "player_id", "decided_at", sqlite_where=OFFERED, postgresql_where=OFFERED),
        keep_existing=True,
    )


def spend_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "daily_spend",
        md,
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("spent", sa.Float, nullable=False),
        keep_existing=True,
    )


LOG_COLUMNS = [
    "decision_id", "caller", "request_id", "player_id", "decided_at", "source", "segment", "event_type", "reward",
    "propensity", "explored", "holdout", "fallback", "reason", "expected_cost", "incremental_net_value",
    "incremental_reengage", "model_version", "policy_version", "response", "policy_arm", "experiment", "variant",
]  # fmt: skip


def new_decision_id() -> str:
    return uuid.uuid4().hex


def upsert_insert(table: sa.Table, dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@dataclass
class Logged:
    row: dict[str, Any]
    created: bool  # False: a retry of a request id already answered; ``row`` is the stored one


class DecisionLog:
    """The decisions table and the online budget's daily spend, in the system store."""

    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.engine = store.engine if store.engine.dialect.name != "sqlite" else _sqlite_writer(store.engine)
        self.table = decisions_table(store.metadata)
        self.spend = spend_table(store.metadata)
        store.ensure()
        _add_missing_columns(store.engine, self.table)
        with store.engine.begin() as conn:  # also on a log made before an index existed; IF NOT EXISTS, as
            for index in self.table.indexes:  # the service's workers start at once
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        self._insert_once = (
            upsert_insert(self.table, self.engine.dialect.name)
            .on_conflict_do_nothing(index_elements=["caller", "request_id"])
            .returning(self.table.c.decision_id)
        )

    def find(self, caller: str, request_id: str) -> dict[str, Any] | None:
        t = self.table
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(t).where(t.c.caller == caller, t.c.request_id == request_id)).mappings().first()
            )
        return dict(row) if row is not None else None

    def find_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The logged rows of these (caller, request id) pairs, in one query."""
        if not keys:
            return {}
        t = self.table
        wanted = set(keys)
        callers, ids = sorted({c for c, _ in wanted}), sorted({r for _, r in wanted})
        # two IN lists, not a row-value IN: SQLite scans the whole table for the latter, and uses the index here
        query = sa.select(t).where(t.c.caller.in_(callers), t.c.request_id.in_(ids))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings()
            return {key: dict(r) for r in rows if (key := (r["caller"], r["request_id"])) in wanted}

    def write(
        self,
        row: dict[str, Any],
        *,
        budget: float | None = None,
        day: date | None = None,
        over_budget: str = "",
        cut_response: str | None = None,
    ) -> Logged:
        """:meth:`write_all` of one row."""
        return self.write_all([row], budget=budget, day=day, over_budget=over_budget, cut_responses=[cut_response])[0]

    def write_all(
        self,
        rows: list[dict[str, Any]],
        *,
        budget: float | None = None,
        day: date | None = None,
        over_budget: str = "",
        cut_responses: list[str | None] | None = None,
    ) -> list[Logged]:
        """Write decisions (``LOG_COLUMNS``) in one transaction; with ``budget``, each offer first reserves its
        expected cost in ``day``'s spend, or becomes no offer (reason ``over_budget``, stored response
        ``cut_responses[i]``) when the budget cannot take it. A (caller, request id) already logged, also by a
        call racing this one, writes nothing and returns the stored row."""
        out: list[Logged | None] = [None] * len(rows)
        retried: list[int] = []
        with self.engine.begin() as conn:
            for i, given in enumerate(rows):
                row = dict(given)
                when = day or row["decided_at"].date()
                cost = float(row.get("expected_cost") or 0.0)
                reserved = False
                if budget is not None and row["event_type"] != NO_OFFER and cost > 0:
                    reserved = self._reserve(conn, when, cost, budget)
                    if not reserved:
                        row.update(
                            event_type=NO_OFFER, reward=0, expected_cost=0.0, incremental_net_value=0.0,
                            incremental_reengage=0.0, reason=over_budget, explored=False, propensity=1.0,
                        )  # fmt: skip
                        row["response"] = cut_responses[i] if cut_responses else None
                # one statement for every row, compiled once (a NULL request id never conflicts); RETURNING,
                # not rowcount: psycopg reports -1 here
                if conn.execute(self._insert_once, row).scalar_one_or_none() is None:
                    if reserved:  # the retry's twin was logged: give its reservation back
                        self._reserve(conn, when, -cost, float("inf"))
                    retried.append(i)
                    continue
                out[i] = Logged(row, created=True)
        if retried:
            found = self.find_many([(str(rows[i]["caller"]), str(rows[i]["request_id"])) for i in retried])
            for i in retried:
                key = (str(rows[i]["caller"]), str(rows[i]["request_id"]))
                if key not in found:  # pragma: no cover - a conflict is a committed row
                    raise RuntimeError(f"request id {key[1]!r} conflicted but is not in the log")
                out[i] = Logged(found[key], created=False)
        return [o for o in out if o is not None]

    def _reserve(self, conn: sa.Connection, day: date, cost: float, budget: float) -> bool:
        s = self.spend
        conn.execute(upsert_insert(s, self.engine.dialect.name).values(day=day, spent=0.0).on_conflict_do_nothing())
        done = conn.execute(
            sa.update(s)
            .where(s.c.day == day, s.c.spent + cost <= budget)
            .values(spent=s.c.spent + cost)
            .returning(s.c.spent)
        )
        return done.scalar_one_or_none() is not None

    def spent(self, day: date) -> float:
        s = self.spend
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(s.c.spent).where(s.c.day == day)).scalar()
        return float(value or 0.0)

    def count_batch(self, campaign: str) -> int:
        t = self.table
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(t.c.caller == "batch", t.c.request_id.like(f"{campaign}:%"))
            return int(conn.execute(query).scalar() or 0)

    def campaign_offers(self, campaign: str) -> pd.DataFrame:
        """A logged batch's offers: decision_id, player_id, event_type, reward (no-offer rows left out)."""
        t = self.table
        query = sa.select(t.c.decision_id, t.c.player_id, t.c.event_type, t.c.reward).where(
            t.c.caller == "batch", t.c.request_id.like(f"{campaign}:%"), t.c.event_type != NO_OFFER
        )
        return read_sql(self.engine, query)

    def write_batch(self, campaign: str, frame: pd.DataFrame, *, replace: bool = False) -> int:
        """A batch's decisions in one transaction; ``replace``: its earlier decisions are deleted in the same one."""
        self.store.ensure()
        t = self.table
        rows = frame.reindex(columns=LOG_COLUMNS)
        with self.store.engine.begin() as conn:
            if replace:
                conn.execute(sa.delete(t).where(t.c.caller == "batch", t.c.request_id.like(f"{campaign}:%")))
            if self.store.schema:  # bulk_insert names the table unqualified
                conn.exec_driver_sql(f'SET LOCAL search_path TO "{self.store.schema}"')
            return bulk_insert(conn, "decisions", rows)

    def last_offers_before(self, t: datetime, *, exclude: str | None = None) -> pd.Series:
        """Every player's last offer logged before ``t`` (player id -> time), leaving out the batch ``exclude``."""
        d = self.table
        query = sa.select(d.c.player_id, sa.func.max(d.c.decided_at).label("at")).where(
            d.c.event_type != NO_OFFER, d.c.decided_at < t
        )
        if exclude is not None:
            query = query.where(sa.or_(d.c.request_id.is_(None), ~d.c.request_id.like(f"{exclude}:%")))
        out = read_sql(self.engine, query.group_by(d.c.player_id))
        return pd.Series(
            pd.to_datetime(out["at"]).to_numpy(), index=out["player_id"].astype(np.int64), dtype="datetime64[ns]"
        )

    def last_offers(self, player_ids: list[int]) -> dict[int, datetime]:
        """When each of these players was last sent an offer by the system (players without one absent)."""
        t = self.table
        query = (
            sa.select(t.c.player_id, sa.func.max(t.c.decided_at))
            .where(t.c.player_id.in_(player_ids), OFFERED)
            .group_by(t.c.player_id)
        )
        with self.engine.connect() as conn:
            return {int(p): pd.Timestamp(at).to_pydatetime() for p, at in conn.execute(query)}

    def read(self, *, source: str | None = None, experiment: str | None = None) -> pd.DataFrame:
        query = sa.select(self.table)
        if source is not None:
            query = query.where(self.table.c.source == source)
        if experiment is not None:
            query = query.where(self.table.c.experiment == experiment)
        return read_sql(self.engine, query.order_by(self.table.c.decided_at, self.table.c.decision_id))


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """Columns added to the log after it was created (nullable ones), added to an older log in place."""
    have = {c["name"] for c in sa.inspect(engine).get_columns(table.name, schema=table.schema)}
    missing = [c for c in table.columns if c.name not in have]
    if not missing:
        return
    name = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
    with engine.begin() as conn:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            exists = " IF NOT EXISTS" if engine.dialect.name == "postgresql" else ""
            try:
                conn.execute(sa.text(f'ALTER TABLE {name} ADD COLUMN{exists} "{column.name}" {kind}'))
            except sa.exc.OperationalError as exc:  # SQLite: another worker added it first
                if "duplicate column" not in str(exc):
                    raise


def _sqlite_writer(engine: sa.Engine) -> sa.Engine:
    """An engine on the same SQLite file for concurrent writers (several API workers): WAL, a busy timeout,
    and BEGIN IMMEDIATE, so a transaction that reads then writes never fails upgrading its lock."""
    writer = sa.create_engine(engine.url, connect_args={"timeout": 30})

    @sa.event.listens_for(writer, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below issues BEGIN
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(writer, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return writer


def response_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), default=str)
