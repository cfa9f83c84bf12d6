"""The closed loop's record: every monitoring run (its figures and whether it alerted) and every model event
(a retraining, a canary started, a model promoted or rolled back), with their figures as JSON."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from platform_db.db import read_sql
from system_db.store import SystemStore


def monitor_runs_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "monitor_runs",
        md,
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),  # the platform's clock the run judged
        sa.Column("alert", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),  # why it alerted ("" when it did not)
        sa.Column("figures", sa.Text, nullable=False),  # JSON: drift share, prediction drift, calibration, ROI
        sa.Column("report", sa.Text, nullable=True),  # the HTML report's path
        keep_existing=True,
    )


def model_events_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "model_events",
        md,
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),  # retrained, canary_started, promoted, rolled_back, ...
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),  # JSON
        keep_existing=True,
    )


class LoopRecord:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.runs = monitor_runs_table(store.metadata)
        self.events = model_events_table(store.metadata)
        store.ensure()

    def monitor_run(
        self, at: datetime, alert: bool, reasons: list[str], figures: dict[str, Any], report: str | None
    ) -> str:
        run_id = str(uuid.uuid4())
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.insert(self.runs).values(
                    run_id=run_id, at=at, alert=alert, reasons="; ".join(reasons),
                    figures=json.dumps(figures, sort_keys=True, default=float), report=report,
                )
            )  # fmt: skip
        return run_id

    def event(self, at: datetime, kind: str, version: int | None, reason: str, figures: dict[str, Any]) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.insert(self.events).values(
                    event_id=str(uuid.uuid4()), at=at, kind=kind, version=version, reason=reason,
                    figures=json.dumps(figures, sort_keys=True, default=float),
                )
            )  # fmt: skip

    def read_runs(self) -> pd.DataFrame:
        return read_sql(self.store.engine, sa.select(self.runs).order_by(self.runs.c.at))

    def read_events(self) -> pd.DataFrame:
        return read_sql(self.store.engine, sa.select(self.events).order_by(self.events.c.at))
