"""The experiments table: what each experiment assigns, when it ran and who started and stopped it.

One experiment runs at a time (a partial unique index on the running status), so a player is in one
variant of one experiment at a time. Its exposures are the decisions logged with its name and the
player's variant (``decisions.experiment``, ``decisions.variant``). The definition (shares and the arms of
the fixed variants) is stored as JSON; :mod:`serving.experiments` gives it its meaning.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from core.errors import RekindleError
from platform_db.db import read_sql
from system_db.store import SystemStore

RUNNING, STOPPED = "running", "stopped"
IS_RUNNING = sa.text(f"status = '{RUNNING}'")


class ExperimentStateError(RekindleError, ValueError):
    """Starting a second experiment, reusing a name, stopping one that is not running."""


def experiments_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "experiments",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),  # JSON: salt, shares, best_arm, marketers
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("stopped_at", sa.DateTime, nullable=True),
        sa.Column("stopped_by", sa.String(128), nullable=True),
        sa.Index(
            "experiments_one_running", "status", unique=True, sqlite_where=IS_RUNNING, postgresql_where=IS_RUNNING
        ),
        keep_existing=True,
    )


class ExperimentStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.table = experiments_table(store.metadata)
        store.ensure()

    def start(self, name: str, definition: dict[str, Any], who: str, at: datetime) -> None:
        t = self.table
        with self.store.engine.begin() as conn:
            running = conn.execute(sa.select(t.c.name).where(IS_RUNNING)).scalar_one_or_none()
            if running is not None:
                raise ExperimentStateError(
                    f"experiment {running!r} is running: a player is in one experiment at a time; stop it first "
                    f"(rekindle experiment stop {running})"
                )
            if conn.execute(sa.select(t.c.name).where(t.c.name == name)).scalar_one_or_none() is not None:
                raise ExperimentStateError(f"an experiment named {name!r} already exists; choose another name")
            try:
                conn.execute(
                    sa.insert(t).values(
                        name=name,
                        definition=json.dumps(definition, sort_keys=True),
                        status=RUNNING,
                        started_at=at,
                        started_by=who,
                    )
                )
            except sa.exc.IntegrityError:  # another start won the race
                raise ExperimentStateError("another experiment was started at the same moment") from None

    def stop(self, name: str, who: str, at: datetime) -> None:
        t = self.table
        with self.store.engine.begin() as conn:
            done = conn.execute(
                sa.update(t).where(t.c.name == name, IS_RUNNING).values(status=STOPPED, stopped_at=at, stopped_by=who)
            ).rowcount
        if not done:
            known = self.list()
            state = known.set_index("name")["status"].get(name)
            raise ExperimentStateError(
                f"experiment {name!r} is {state}, not running" if state else
                f"no experiment named {name!r}; expected one of {sorted(known['name'])}"
            )  # fmt: skip

    def running(self) -> tuple[str, dict[str, Any]] | None:
        """The running experiment's name and definition, if one runs."""
        t = self.table
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.name, t.c.definition).where(IS_RUNNING)).first()
        return None if row is None else (str(row[0]), json.loads(row[1]))

    def get(self, name: str) -> dict[str, Any]:
        got = self.list().set_index("name")
        if name not in got.index:
            raise ExperimentStateError(f"no experiment named {name!r}; expected one of {sorted(got.index)}")
        row = {str(k): v for k, v in got.loc[name].to_dict().items()}
        row["definition"] = json.loads(row["definition"])
        return row

    def list(self) -> pd.DataFrame:
        t = self.table
        return read_sql(self.store.engine, sa.select(t).order_by(t.c.started_at))
